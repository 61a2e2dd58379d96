"""A tree consumer whose training forwards feed a TreeBuilder (the loss)."""

from __future__ import annotations

from typing import Any, Dict, Optional

import torch

from .builder import TreeBuilder
from .class_statistics import ClassStatistics
from .consumer import TreeConsumerMixin, check_checkpoint_mode, check_tree
from .hierarchical_class_tree import HierarchicalClassTree, check_tree_matches


class StatisticsFeederMixin(TreeConsumerMixin):
    """Feeds the detached embeddings of training forwards to ``tree_builder``:

    - its own builder with a schedule in drop-in mode (it builds the trees);
    - a `TreeRebuildHook`'s builder with
      ``statistics_from="training"`` (the hook builds them);
    - none when the tree is given, or a hook embeds the data set.

    The class using it sets ``tree_builder`` and ``_fixed_tree`` in its
    constructor and defines ``tree_options`` and ``normalizes_embeddings``.
    The builder's statistics and schedule travel in the ``state_dict``.
    """

    tree_builder: Optional[TreeBuilder] = None
    _fixed_tree: bool = False
    tree_options: Dict[str, Any]
    normalizes_embeddings: bool

    @property
    def drop_in(self) -> bool:
        """Whether it builds its own trees."""
        return self.tree_builder is not None and self.tree_builder.schedule is not None

    @property
    def gathers_statistics(self) -> bool:
        """Whether training forwards feed a builder that does not build on its own."""
        return self.tree_builder is not None and self.tree_builder.schedule is None

    @property
    def statistics(self) -> Optional[ClassStatistics]:
        """The statistics gathered since the last tree or take (None: none)."""
        return None if self.tree_builder is None else self.tree_builder.statistics

    def attach(self, builder: Optional[TreeBuilder]) -> None:
        """Trees come from a hook from now on (drop-in mode ends); with
        ``builder``, training forwards feed it."""
        super().attach(builder)
        self.tree_builder = builder

    def update_tree(self, tree: Optional[HierarchicalClassTree], label_fn=None) -> None:
        """Use ``tree`` from now on; ends drop-in mode. The tree must have been
        built with this object's tree options."""
        if tree is not None:
            check_tree_matches(self.tree_options, check_tree(tree), "the tree handed to the loss")
        super().update_tree(tree)
        self.disable_drop_in()

    def disable_drop_in(self) -> None:
        """Stop building own trees and drop the statistics gathered for them."""
        if self.drop_in:
            self.tree_builder = None

    def gather_statistics(self) -> None:
        """Keep the statistics of every training forward until `take_statistics`."""
        if not self.gathers_statistics:
            self.tree_builder = TreeBuilder(self.tree_options, self.normalizes_embeddings)

    def take_statistics(self) -> Optional[ClassStatistics]:
        """The statistics gathered since the last take, and start afresh."""
        return None if self.tree_builder is None else self.tree_builder.take_statistics()

    def observe(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        """Feed a training batch (checked) to the builder; take the tree a
        drop-in build makes. Nothing in eval mode or without a builder."""
        if self.training and self.tree_builder is not None:
            tree = self.tree_builder.observe(embeddings, labels)
            if tree is not None:
                self.tree = tree

    def get_extra_state(self) -> Dict[str, Any]:
        state = super().get_extra_state()
        builder = self.tree_builder or TreeBuilder(self.tree_options, self.normalizes_embeddings)
        state.update(builder.state_dict(), drop_in=torch.tensor(self.drop_in))
        return state

    def set_extra_state(self, state: Dict[str, Any]) -> None:
        # parse and check everything before assigning anything: a bad state changes nothing
        tree = self.tree_from_extra_state(state)
        if tree is not None:
            check_tree_matches(self.tree_options, tree, "the saved tree")
        saved_drop_in = bool(state.get("drop_in", False))
        can_hold_a_tree = self.tree_builder is not None or self.awaits_hook_tree
        check_checkpoint_mode(tree, saved_drop_in, self._fixed_tree, can_hold_a_tree)
        builder = self.tree_builder
        if self.drop_in and not saved_drop_in:
            builder = None  # the saved loss had left drop-in mode (a hook's tree): so does this one
        # statistics without a builder to take them are dropped, but a bad state still raises
        target = builder or TreeBuilder(self.tree_options, self.normalizes_embeddings)
        target.load_state_dict(state)
        self.tree, self.tree_builder = tree, builder
