"""What the loss and the miner share about holding a class tree."""

from __future__ import annotations

from typing import Any, Dict, Optional

import torch

from .._logging import warn_once
from .hierarchical_class_tree import HierarchicalClassTree


def check_tree(tree) -> Optional[HierarchicalClassTree]:
    if tree is not None and not isinstance(tree, HierarchicalClassTree):
        raise TypeError(f"tree must be a HierarchicalClassTree or None, got {type(tree).__name__}")
    return tree


class TreeConsumerMixin:
    """Holds ``self.tree``, moves it to the embeddings' device on use, and
    keeps it in the module's ``state_dict`` as plain tensors (weights-only
    ``torch.load`` restores it, whatever the number of classes).

    ``awaits_hook_tree`` is set by the :class:`~pml_htl.TreeRebuildHook` that
    registers the object: using it before that hook has built a tree warns.
    """

    tree: Optional[HierarchicalClassTree]
    awaits_hook_tree: bool = False

    def update_tree(self, tree: HierarchicalClassTree) -> None:
        """Use ``tree`` from now on (the tree-rebuild hook calls this)."""
        self.tree = check_tree(tree)

    def clear_tree(self) -> None:
        self.tree = None

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
