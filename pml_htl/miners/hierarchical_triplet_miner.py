"""HierarchicalTripletMiner: triplets that violate HTL's tree margin."""

from __future__ import annotations

from typing import Optional

import torch
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.miners import BaseMiner

from ..tree import HierarchicalClassTree
from ..utils.margins import check_distance, hinge_terms
from ..utils.tree_consumer import TreeConsumerMixin, check_tree
from ..utils.triplets import all_triplet_indices, same_class_masks
from ..utils.validation import (
    check_finite_number,
    check_metric_inputs,
    check_positive_int,
)


class HierarchicalTripletMiner(TreeConsumerMixin, BaseMiner):
    """Returns the (a, p, n) triplets with D(a, p) - D(a, n) + alpha > 0.

    alpha = beta + d_H(y_a, y_n) - s_{y_a} comes from the same class tree as
    the loss, so HTL's margin can drive any triplet or pair loss.

    Args:
        tree: a :class:`~pml_htl.HierarchicalClassTree`; without one (before
            the hook has built it) alpha = beta.
        beta: beta of the margin (default 0.1).
        distance: as for the loss (default ``LpDistance(power=2)``).
        max_elements: bound on the working set of one chunk of anchors.
    """

    def __init__(
        self,
        tree: Optional[HierarchicalClassTree] = None,
        beta: float = 0.1,
        max_elements: int = 1 << 22,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_distance(self.distance)
        self.tree = check_tree(tree)
        self.beta = check_finite_number(beta, "beta")
        self.max_elements = check_positive_int(max_elements, "max_elements")
        self.add_to_recordable_attributes(list_of_names=["beta"], is_stat=False)

    def get_default_distance(self):
        return LpDistance(p=2, power=2, normalize_embeddings=True)

    def forward(self, embeddings, labels, ref_emb=None, ref_labels=None):
        check_metric_inputs(embeddings, labels, ref_emb, ref_labels)
        return super().forward(embeddings, labels, ref_emb, ref_labels)

    def mine(self, embeddings, labels, ref_emb, ref_labels):
        remove_self = ref_labels is labels
        tree = self.tree_on(embeddings.device)
        dist, _, offsets, sign = hinge_terms(
            self.distance, tree, self.beta, embeddings, labels, ref_emb, ref_labels, False
        )
        positive, negative = same_class_masks(labels, ref_labels, remove_self)
        per_anchor = positive.sum(1) * negative.sum(1)
        found = []
        start, B = 0, embeddings.shape[0]
        while start < B:
            # grow the chunk of anchors until its triplets reach max_elements
            cum = torch.cumsum(per_anchor[start:], 0)
            stop = start + max(1, int((cum <= self.max_elements).sum()))
            a, p, n = all_triplet_indices(positive[start:stop], negative[start:stop])
            a = a + start
            violation = sign * (dist[a, p] - dist[a, n]) + offsets[a, n]
            keep = violation > 0
            found.append((a[keep], p[keep], n[keep]))
            start = stop
        if not found:
            empty = torch.zeros(0, dtype=torch.long, device=labels.device)
            return empty, empty.clone(), empty.clone()
        return tuple(torch.cat(x).to(labels.device) for x in zip(*found))
