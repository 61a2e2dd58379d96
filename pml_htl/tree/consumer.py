"""The contract between the tree-rebuild hook and what it hands trees to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Protocol, runtime_checkable

import numpy as np
import torch

from .._logging import warn_once
from .builder import TreeBuilder
from .hierarchical_class_tree import HierarchicalClassTree

#: Maps a data set's labels to the labels the loss sees (and the tree holds),
#: e.g. a PML trainer's ``set_min_label_to_zero``.
LabelFn = Callable[[np.ndarray], np.ndarray]


def check_tree(tree) -> Optional[HierarchicalClassTree]:
    if tree is not None and not isinstance(tree, HierarchicalClassTree):
        raise TypeError(f"tree must be a HierarchicalClassTree or None, got {type(tree).__name__}")
    return tree


@dataclass(frozen=True)
class TreeRequirements:
    """What a consumer needs of the trees a hook builds (None: no requirement).

    Attributes:
        tree_options: the ``num_levels``, ``linkage`` and ``level_start`` its
            trees must be built with (the loss's).
        normalize: whether embeddings are L2-normalised before the statistics
            (as the consumer's distance does).
        feeds_statistics: it can feed the hook's `TreeBuilder` with the
            embeddings of its training forwards (the loss;
            ``statistics_from="training"``).
        batch_size: the batch size its batches need (the sampler's l' m t).
    """

    tree_options: Optional[Mapping[str, Any]] = None
    normalize: Optional[bool] = None
    feeds_statistics: bool = False
    batch_size: Optional[int] = None


@runtime_checkable
class TreeConsumer(Protocol):
    """What a `TreeRebuildHook` drives: the loss, the miner,
    the sampler, or an object of yours (subclass `TreeConsumerMixin`
    for the defaults).

    - **Registration.** ``hook.register(*consumers)`` reads
      `requirements` of every consumer first and checks them against
      each other and the hook's settings; only when all agree does it call
      `attach` on each (which must not fail). A refused registration
      changes nothing.
    - **Each rebuild.** The hook builds one tree (from an embedding pass, or
      from the statistics the loss fed its builder) and calls
      `update_tree` on every consumer in registration order. A
      consumer that cannot take the tree raises and stays as it was; the
      hook then gives every consumer that already took it back its previous
      ``tree`` (read before the hand-out; ``None`` for none) with the same
      ``label_fn``, and re-raises. So every consumer holds the new tree, or
      every consumer holds its old one.
    """

    tree: Optional[HierarchicalClassTree]

    def requirements(self) -> TreeRequirements:
        """What the trees handed to this consumer must satisfy."""
        ...

    def attach(self, builder: Optional[TreeBuilder]) -> None:
        """Registered with a hook: trees come from the hook from now on.
        ``builder``: the builder to feed with training statistics (only for
        the one consumer that feeds them), else None."""
        ...

    def update_tree(
        self, tree: Optional[HierarchicalClassTree], label_fn: Optional[LabelFn] = None
    ) -> None:
        """Use ``tree`` (None: no tree) from now on, or raise and stay unchanged.
        ``label_fn`` maps a data set's labels to the tree's, for consumers
        indexed by the data set's own labels (the sampler); others ignore it."""
        ...


class TreeConsumerMixin:
    """The `TreeConsumer` defaults: holds ``self.tree``, moves it to the
    embeddings' device on use, and keeps it in the module's ``state_dict`` as
    plain tensors (weights-only ``torch.load`` restores it, whatever the number
    of classes).

    ``awaits_hook_tree`` is set when a `TreeRebuildHook`
    registers the object: using it before that hook has built a tree warns.
    """

    tree: Optional[HierarchicalClassTree] = None
    awaits_hook_tree: bool = False

    def requirements(self) -> TreeRequirements:
        return TreeRequirements()

    def attach(self, builder: Optional[TreeBuilder]) -> None:
        self.awaits_hook_tree = True

    def update_tree(
        self, tree: Optional[HierarchicalClassTree], label_fn: Optional[LabelFn] = None
    ) -> None:
        """Use ``tree`` from now on (the tree-rebuild hook calls this)."""
        self.tree = check_tree(tree)

    def clear_tree(self) -> None:
        self.update_tree(None)

    def tree_on(self, device: torch.device) -> Optional[HierarchicalClassTree]:
        if self.tree is not None and self.tree.device != device:
            self.tree = self.tree.to(device)
        return self.tree

    def warn_if_hook_tree_missing(self) -> bool:
        """Warn (once) when a hook was meant to give a tree and has not; True then."""
        if self.tree is not None or not self.awaits_hook_tree:
            return False
        warn_once(
            self,
            "no hook tree",
            f"{type(self).__name__} is registered with a TreeRebuildHook that has not "
            "built a tree yet, so its margins are the flat beta: call the hook once "
            "before training (hook(trainer) with PML's trainers, hook.rebuild(model) "
            "in a hand-written loop)",
        )
        return True

    def get_extra_state(self) -> Dict[str, Any]:
        return {"tree": {} if self.tree is None else self.tree.state_dict()}

    @staticmethod
    def tree_from_extra_state(state: Dict[str, Any]) -> Optional[HierarchicalClassTree]:
        tree_state = state.get("tree", {})
        return HierarchicalClassTree.from_state_dict(tree_state) if tree_state else None

    def set_extra_state(self, state: Dict[str, Any]) -> None:
        self.tree = self.tree_from_extra_state(state)


def check_checkpoint_mode(
    tree: Optional[HierarchicalClassTree],
    saved_drop_in: bool,
    fixed_tree: bool,
    can_hold_a_tree: bool,
) -> None:
    """Raise, naming the mismatch, when a checkpoint's tree state does not fit
    how the loss loading it was built (so that loading never switches modes).

    Args:
        tree: the checkpoint's tree (None: it has none).
        saved_drop_in: whether the saved loss was in drop-in mode.
        fixed_tree: whether the loading loss was built with ``tree=``.
        can_hold_a_tree: whether it can receive trees otherwise (drop-in mode,
            or registered with a TreeRebuildHook).
    """
    if fixed_tree and tree is None:
        raise ValueError(
            "the checkpoint holds no class tree, but this loss was built with tree= "
            "(a fixed tree): load a checkpoint saved with a tree, or build the loss "
            "without tree="
        )
    if fixed_tree and saved_drop_in:
        raise ValueError(
            "the checkpoint is of a loss in drop-in mode (it builds its own trees), but "
            "this loss was built with tree= (a fixed tree): build it without tree= to go "
            "on in drop-in mode"
        )
    if tree is not None and not (fixed_tree or can_hold_a_tree):
        raise ValueError(
            "the checkpoint holds a class tree, but this loss was built without tree=, "
            "with tree_update_interval=None and no TreeRebuildHook, so its margins are the "
            "flat beta: register it with its TreeRebuildHook (or keep drop-in mode) "
            "before loading"
        )
