"""HierarchicalTripletMiner: triplets that violate HTL's tree margin."""

from __future__ import annotations

from typing import Any, Optional

import torch
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.miners import BaseMiner

from .._compat import DefaultDistanceNames, record_attributes, reference_set, triplet_indices
from .._hinge import check_distance, hinge_terms
from .._logging import warn_once
from .._triplets import same_class_masks, violating_triplets
from .._validation import (
    check_beta,
    check_margin_scale,
    check_metric_inputs,
    check_positive_int,
)
from ..tree import (
    MAX_SQUARED_DISTANCE,
    HierarchicalClassTree,
    TreeConsumer,
    TreeConsumerMixin,
    TreeRequirements,
    check_tree,
)


class HierarchicalTripletMiner(DefaultDistanceNames, TreeConsumerMixin, BaseMiner):
    """Returns the (a, p, n) triplets with D(a, p) - D(a, n) + alpha > 0.

    alpha = beta + lambda (d_H(y_a, y_n) - s_{y_a}) comes from the same class tree as
    the loss, so HTL's margin can drive any triplet or pair loss.

    Args:
        tree: a `HierarchicalClassTree`. Or register the miner
            with the `TreeRebuildHook`, or pass ``tree_source``.
            Without any tree alpha = beta (with a warning).
        tree_source: an object whose ``.tree`` the miner uses at every call,
            e.g. a `HierarchicalTripletLoss` in drop-in
            mode (the miner then follows the loss's own trees).
        beta: beta of the margin (default 0.1), a squared distance in [0, 4].
        margin_scale: lambda, the scale of the tree's part of the margin
            (default 1, the paper's margin), as in the loss.
        distance: as for the loss (default ``LpDistance(power=2)``).
        max_elements: bound on the working set of one chunk of anchors
            (rows of the (B, M) distance matrix).

    The triplets are listed without listing the easy ones. Their number sizes
    the output, so it is read back to the host once per call (on CUDA, one
    host-device synchronisation, as PML's miners need); the input checks run
    as device-side asserts there (docs/method.md, "Input checks and their cost").

    Example:
        >>> import torch
        >>> from pml_htl import HierarchicalClassTree, losses, miners
        >>> labels = torch.arange(4).repeat_interleave(4)  # int64 class labels
        >>> tree = HierarchicalClassTree.from_embeddings(torch.randn(16, 8), labels)
        >>> miner = miners.HierarchicalTripletMiner(tree=tree)  # or register it with the hook
        >>> embeddings = torch.randn(16, 8)
        >>> a, p, n = miner(embeddings, labels)  # indices of the violating triplets
        >>> loss = losses.TripletMarginLoss()(embeddings, labels, (a, p, n))
    """

    def __init__(
        self,
        tree: Optional[HierarchicalClassTree] = None,
        beta: float = 0.1,
        margin_scale: float = 1.0,
        max_elements: int = 1 << 22,
        tree_source: Optional[Any] = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_distance(self.distance)
        self.tree = check_tree(tree)
        if tree_source is not None:
            if tree is not None:
                raise ValueError("give tree or tree_source, not both")
            if not isinstance(tree_source, TreeConsumer):
                raise TypeError(
                    "tree_source must be a tree consumer (e.g. a HierarchicalTripletLoss), "
                    f"got {type(tree_source).__name__}"
                )
        # a plain attribute, not a submodule: the loss keeps its own state_dict
        object.__setattr__(self, "tree_source", tree_source)
        self.beta = check_beta(beta, MAX_SQUARED_DISTANCE)
        self.margin_scale = check_margin_scale(margin_scale)
        self.max_elements = check_positive_int(max_elements, "max_elements")
        record_attributes(self, ["beta", "margin_scale"], is_stat=False)

    def htl_default_distance(self):
        return LpDistance(p=2, power=2, normalize_embeddings=True)

    def requirements(self) -> TreeRequirements:
        return TreeRequirements(normalize=bool(self.distance.normalize_embeddings))

    def forward(self, embeddings, labels, ref_emb=None, ref_labels=None):
        check_metric_inputs(embeddings, labels, ref_emb, ref_labels)
        return super().forward(embeddings, labels, ref_emb, ref_labels)

    def current_tree(self, device: torch.device) -> Optional[HierarchicalClassTree]:
        """The tree this call mines with: the tree source's, else the miner's own."""
        if self.tree_source is None:
            tree = self.tree_on(device)
            if tree is None and not self.warn_if_hook_tree_missing():
                warn_once(
                    self,
                    "no tree",
                    "HierarchicalTripletMiner has no class tree, so it mines with the flat "
                    "margin beta: register it with the TreeRebuildHook, pass tree=, or "
                    "follow a loss's tree with tree_source=loss",
                )
            return tree
        tree = check_tree(self.tree_source.tree)
        return None if tree is None else tree.to(device)

    def mine(self, embeddings, labels, ref_emb, ref_labels):
        ref_emb, ref_labels, remove_self = reference_set(embeddings, labels, ref_emb, ref_labels)
        empty = torch.zeros(0, dtype=torch.long, device=labels.device)
        if embeddings.shape[0] == 0 or ref_emb.shape[0] == 0:
            return triplet_indices(empty, empty.clone(), empty.clone())
        tree = self.current_tree(embeddings.device)
        # a followed loss in drop-in mode has no statistics for some classes yet
        allow_unknown = self.tree_source is not None
        dist, _, offsets, sign = hinge_terms(
            self.distance,
            tree,
            self.beta,
            embeddings,
            labels,
            ref_emb,
            ref_labels,
            allow_unknown,
            self.margin_scale,
        )
        positive, negative = same_class_masks(labels, ref_labels, remove_self)
        found = violating_triplets(dist, offsets, positive, negative, sign, self.max_elements)
        return triplet_indices(*found)
