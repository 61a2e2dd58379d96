"""HierarchicalTripletLoss (docs/method.md, "The loss")."""

from __future__ import annotations

from typing import Any, Dict, Optional, Union

import torch
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.losses import BaseMetricLossFunction
from pytorch_metric_learning.reducers import MeanReducer

from .._compat import (
    DefaultDistanceNames,
    DefaultReducerNames,
    collects_stats,
    loss_term,
    record_attributes,
    reference_set,
)
from .._hinge import check_distance, hinge_terms
from .._logging import warn_once
from .._triplets import (
    all_triplet_hinge_sum,
    all_triplet_indices,
    check_indices_tuple,
    convert_to_triplets,
    pair_masks,
    same_class_masks,
    upcast_half,
)
from .._validation import check_beta, check_margin_scale, check_metric_inputs
from ..tree import (
    MAX_SQUARED_DISTANCE,
    HierarchicalClassTree,
    TreeBuilder,
    TreeRequirements,
    check_tree,
    resolve_tree_options,
)
from ..tree.feeder import StatisticsFeederMixin
from ..tree.rebuild_schedule import AUTO, RebuildSchedule, check_tree_update_interval, schedule_for


class HierarchicalTripletLoss(
    DefaultDistanceNames, DefaultReducerNames, StatisticsFeederMixin, BaseMetricLossFunction
):
    """Triplet loss whose margin comes from a hierarchical class tree.

    For every triplet (a, p, n) in the batch:

        L_M = 1/(2 Z_M) sum_z [D(a, p) - D(a, n) + alpha_z]_+
        alpha_z = beta + lambda (d_H(y_a, y_n) - s_{y_a})

    d_H is the threshold d_l of the level where the classes y_a and y_n merge
    in the tree, s_c the spread of class c, Z_M the number of triplets.

    Args:
        tree: a `HierarchicalClassTree`, fixed. Usually left
            out: a `TreeRebuildHook` registered with the loss
            hands it a tree of the whole training set every epoch; without
            one the loss runs in drop-in mode.
        beta: beta, the constant part of the margin (default 0.1, the
            paper's), a squared distance in [0, 4].
        margin_scale: lambda, the scale of the tree's part of the margin
            (default 1, the paper's; 0 gives the flat margin beta). Ours.
            On our benchmarks values below 1 trained better (start at 0.5,
            or tune it): at 1 the far margins grow with every tree.
        tree_update_interval: drop-in mode (no ``tree``, no hook): when the
            loss builds its own tree from the detached embeddings of its
            training forwards. ``"auto"`` (default): a first tree after 10
            iterations, then each once its predicted build time is at most 3%
            of the training time since the last. An int: every this many
            iterations. A `RebuildSchedule` (copied) for
            other settings. ``None``: no drop-in mode. Until a class is in
            the tree its margin is beta.
        num_levels, linkage, level_start: L and the open choices of the tree
            (`HierarchicalClassTree`); by default those of
            ``tree``, else 16, "average", 0. Every tree the loss receives
            must have been built with them.
        distance: default ``LpDistance(power=2)`` (squared distances of
            normalised embeddings, alpha's units). ``LpDistance(power=1)`` is
            the hinge as printed in the paper; with ``CosineSimilarity`` the
            hinge is [cos_an - cos_ap + alpha / 2]_+.
        reducer: default ``MeanReducer``: the mean of half the hinge over all
            triplets, easy ones included (the paper's 1/(2 Z_M)), computed in
            O(B M) memory. Another reducer, or a triplet ``indices_tuple``,
            gets one loss per triplet.

    Inputs: ``embeddings`` (B, D) floating point; ``labels`` (B,) an integer
    tensor (``labels.long()``); optionally ``ref_emb`` (M, D) with
    ``ref_labels`` (M,), and an ``indices_tuple`` from a miner. Without
    ``indices_tuple`` every positive of the anchor's class counts, including
    a copy of the anchor in ``ref_emb``; the pairs (i, i) are dropped only
    for self-comparison (PML's rule). Half-precision embeddings are computed
    in float32. On CUDA the default step never waits for the device
    (``PML_HTL_EAGER_CHECKS=1`` turns its device-side asserts into
    ValueErrors), and it runs under ``torch.compile`` without a graph break.
    With ``collect_stats=True`` (PML 2) every forward records
    ``num_triplets``, ``num_violating_triplets`` and ``mean_margin``.

    Example:
        >>> import torch
        >>> from pml_htl import HierarchicalClassTree, losses
        >>> labels = torch.arange(4).repeat_interleave(4)  # int64 class labels
        >>> tree = HierarchicalClassTree.from_embeddings(torch.randn(16, 8), labels)
        >>> loss_func = losses.HierarchicalTripletLoss(tree=tree)  # or a TreeRebuildHook
        >>> loss = loss_func(torch.randn(16, 8, requires_grad=True), labels)
        >>> loss.backward()

        In training, register the loss (and an
        `AnchorNeighborSampler`) with a
        `TreeRebuildHook` instead of passing ``tree``.
    """

    def __init__(
        self,
        tree: Optional[HierarchicalClassTree] = None,
        beta: float = 0.1,
        margin_scale: float = 1.0,
        tree_update_interval: Optional[Union[int, str, RebuildSchedule]] = AUTO,
        num_levels: Optional[int] = None,
        linkage: Optional[str] = None,
        level_start: Optional[int] = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_distance(self.distance)
        self.beta = check_beta(beta, MAX_SQUARED_DISTANCE)
        self.margin_scale = check_margin_scale(margin_scale)
        self.tree_update_interval = check_tree_update_interval(tree_update_interval)
        self.tree = check_tree(tree)
        options = dict(num_levels=num_levels, linkage=linkage, level_start=level_start)
        # kept as pairs, not a dict: PML's record-keeper logs every dict attribute
        self._tree_option_items = tuple(resolve_tree_options(options, tree, "tree").items())
        self._fixed_tree = tree is not None
        #: drop-in mode's own builder, a hook's (statistics_from="training"), or None
        self.tree_builder: Optional[TreeBuilder] = None
        if tree is None and self.tree_update_interval is not None:
            schedule = schedule_for(self.tree_update_interval)
            self.tree_builder = TreeBuilder(self.tree_options, self.normalizes_embeddings, schedule)
        record_attributes(self, ["beta", "margin_scale"], is_stat=False)
        stats = ["num_triplets", "num_violating_triplets", "mean_margin"]
        record_attributes(self, stats, is_stat=True)

    @property
    def tree_options(self) -> Dict[str, Any]:
        """num_levels (L), linkage and level_start of every tree this loss uses."""
        return dict(self._tree_option_items)

    def htl_default_distance(self):
        return LpDistance(p=2, power=2, normalize_embeddings=True)

    def htl_default_reducer(self):
        return MeanReducer()

    @property
    def normalizes_embeddings(self) -> bool:
        return bool(self.distance.normalize_embeddings)

    def requirements(self) -> TreeRequirements:
        return TreeRequirements(self.tree_options, self.normalizes_embeddings, True)

    def forward(self, embeddings, labels=None, indices_tuple=None, ref_emb=None, ref_labels=None):
        check_metric_inputs(embeddings, labels, ref_emb, ref_labels)
        return super().forward(embeddings, labels, indices_tuple, ref_emb, ref_labels)

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        ref_emb, ref_labels, remove_self = reference_set(embeddings, labels, ref_emb, ref_labels)
        if embeddings.shape[0] == 0 or ref_emb.shape[0] == 0:
            # nothing to compare, as in PML; the iteration still counts, so that
            # distributed ranks reach their drop-in builds together
            self.observe(embeddings, labels)
            return self._zero_losses(embeddings)
        self._warn_if_no_tree()
        tree = self.tree_on(embeddings.device)
        dist, alpha, offsets, sign = hinge_terms(
            self.distance, tree, self.beta, embeddings, labels, ref_emb, ref_labels,
            self.drop_in, self.margin_scale,
        )  # fmt: skip
        B, M = dist.shape
        masks = None
        if indices_tuple is not None:
            check_indices_tuple(indices_tuple, B, M)
        if type(self.reducer) is MeanReducer:
            if indices_tuple is None:
                masks = same_class_masks(labels, ref_labels, remove_self)
            elif len(indices_tuple) == 4:  # pairs, e.g. from CrossBatchMemory
                masks = pair_masks(indices_tuple, B, M)
        if masks is not None:
            loss_dict = self._all_triplets_mean(embeddings, dist, offsets, alpha, *masks, sign)
        else:
            if indices_tuple is None:
                triplets = all_triplet_indices(*same_class_masks(labels, ref_labels, remove_self))
            else:
                triplets = convert_to_triplets(indices_tuple, B)
            loss_dict = self._per_triplet(embeddings, dist, offsets, alpha, triplets, sign)
        self.observe(embeddings, labels)
        return loss_dict

    def _zero_losses(self, embeddings):
        """A zero loss in the dtype the loss has with triplets (float32 for half
        precision), connected to the embeddings' graph."""
        return {"loss": loss_term(upcast_half(embeddings).sum() * 0, None, "already_reduced")}

    def _all_triplets_mean(self, embeddings, dist, offsets, alpha, positive, negative, sign):
        """Mean over every (a, p, n) with positive[a, p] and negative[a, n]."""
        pos_count, neg_count = positive.sum(1), negative.sum(1)
        # a tensor, not read back: without triplets the sum is 0 and so the loss
        num_triplets = (pos_count * neg_count).sum()
        total, active = all_triplet_hinge_sum(dist, offsets, positive, negative, sign)
        if collects_stats(self):  # PML's statistics are numbers: read back (a sync on CUDA)
            self.num_triplets = int(num_triplets)
            self.num_violating_triplets = int(active)
            margin_sum = (pos_count * torch.where(negative, alpha, 0).sum(1)).sum()
            self.mean_margin = float(margin_sum) / max(self.num_triplets, 1)
        loss = total / (2 * num_triplets.clamp(min=1))
        return {"loss": loss_term(loss, None, "already_reduced")}

    def _per_triplet(self, embeddings, dist, offsets, alpha, triplets, sign):
        a, p, n = triplets
        if len(a) == 0:
            return self._zero_losses(embeddings)
        violation = sign * (dist[a, p] - dist[a, n]) + offsets[a, n]
        if collects_stats(self):
            self.num_triplets = len(a)
            self.num_violating_triplets = int((violation > 0).sum())
            self.mean_margin = float(alpha[a, n].mean())
        return {"loss": loss_term(0.5 * torch.relu(violation), (a, p, n), "triplet")}

    def _warn_if_no_tree(self) -> None:
        if self.tree is not None or self.drop_in or self.warn_if_hook_tree_missing():
            return
        warn_once(
            self,
            "no tree",
            "HierarchicalTripletLoss has no class tree and its drop-in mode is off "
            "(tree_update_interval=None), so every margin is the flat beta: pass tree=, "
            "or register the loss with a TreeRebuildHook",
        )
