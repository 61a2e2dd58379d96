"""HierarchicalTripletLoss (docs/method.md, "The loss")."""

from __future__ import annotations

from typing import Any, Dict, Optional, Union

import torch
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.losses import BaseMetricLossFunction
from pytorch_metric_learning.reducers import MeanReducer

from .._hinge import check_distance, hinge_terms
from .._logging import LOGGER, warn_once
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
    ClassStatistics,
    HierarchicalClassTree,
    StatisticsBuffer,
    TreeConsumerMixin,
    check_tree,
    check_tree_matches,
    resolve_tree_options,
)
from ..tree.distributed import check_same_tree, combine_rank_statistics
from ..tree.rebuild_schedule import AUTO, RebuildSchedule, check_tree_update_interval


class HierarchicalTripletLoss(TreeConsumerMixin, BaseMetricLossFunction):
    """Triplet loss whose margin comes from a hierarchical class tree.

    For every triplet (a, p, n) in the batch::

        L_M = 1/(2 Z_M) sum_z [D(a, p) - D(a, n) + alpha_z]_+
        alpha_z = beta + lambda (d_H(y_a, y_n) - s_{y_a})

    Args:
        tree: a :class:`~pml_htl.HierarchicalClassTree` (built by the
            tree-rebuild hook from the whole training set). Without one the
            loss runs in drop-in mode (below).
        beta: beta, the constant part of the margin (default 0.1, the
            paper's), a squared distance in [0, 4].
        margin_scale: lambda, the scale of the tree's part of the margin
            (default 1, the paper's margin; 0 gives the flat margin beta with
            the tree still choosing the batches). Ours, not the paper's.
        tree_update_interval: drop-in mode only: when to rebuild the loss's
            own tree from the statistics of the detached embeddings seen in
            training mode since the last one (summed per class in float32
            over up to 8,192 rows, float64 for float64 embeddings, then
            accumulated in float64). ``"auto"`` (default): a first tree after
            10 iterations, then each tree once its predicted build time is at
            most 3% of the training wall time since the last build. An int:
            every this many iterations. A
            :class:`~pml_htl.tree.RebuildSchedule` (its settings are copied)
            for other settings, e.g. ``RebuildSchedule("auto", budget=0.1)``.
            ``None`` disables drop-in mode. Until a class has statistics in
            the tree its margin is beta. Under torch.distributed every rank
            builds its tree on the same iteration from one all-reduced set of
            statistics (the mean when the ranks saw the same samples, the sum
            otherwise).
        num_levels, linkage, level_start: L and the open choices of the tree
            (see :class:`~pml_htl.HierarchicalClassTree`); by default those of
            ``tree`` when given, else 16, "average", 0. Every tree the loss
            receives (from a hook, ``update_tree`` or a checkpoint) must have
            been built with them.
        distance: default ``LpDistance(power=2)`` (normalised, squared
            distances, alpha's units). ``LpDistance(power=1)`` is the hinge on
            plain distances as printed in the paper; with ``CosineSimilarity``
            the hinge is [cos_an - cos_ap + alpha / 2]_+.
        reducer: default ``MeanReducer``: the mean over all triplets, easy ones
            included, of half the hinge, i.e. the paper's 1/(2 Z_M). It is
            computed in O(B M) memory and returned already reduced, also for
            pair tuples (``CrossBatchMemory``). Any other reducer, or a
            triplet ``indices_tuple``, gets one loss per triplet: with all
            triplets that is B (t - 1)(B - t) values in memory.

    With ``ref_emb`` and no ``indices_tuple``, every reference sample of the
    anchor's class is a positive, including a copy of the anchor itself. As in
    PML, the pairs (i, i) are dropped only when ``ref_labels is labels`` (the
    same tensor object, e.g. when ``ref_emb`` is not given).

    float16/bfloat16 embeddings are computed in float32 and the loss is
    returned in float32, also when there is no triplet; gradients reach the
    embeddings in their own dtype. An empty batch gives a zero loss, as in PML.

    Registered with a ``TreeRebuildHook(statistics_from="training")``, the loss
    gathers the statistics of the detached embeddings of its training-mode
    forwards (as drop-in mode does, in the same buffer) for the hook to build
    the next tree from, instead of an extra pass over the training set.

    With ``collect_stats=True`` (or PML's ``c_f.COLLECT_STATS``) every forward
    records ``num_triplets``, ``num_violating_triplets`` and ``mean_margin``,
    which PML's record-keeper logs. See docs/method.md for the formulas.

    The default forward and backward read no value back to the host, so on
    CUDA they never wait for the GPU; the input's value checks run there as
    device-side asserts (``PML_HTL_EAGER_CHECKS=1``: ValueErrors, with a sync
    each). docs/method.md, "Input checks and their cost", lists what syncs.
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
        tree_update_interval = check_tree_update_interval(tree_update_interval)
        self.tree = check_tree(tree)
        options = dict(num_levels=num_levels, linkage=linkage, level_start=level_start)
        # kept as pairs, not a dict: PML's record-keeper logs every dict attribute
        self._tree_option_items = tuple(resolve_tree_options(options, tree, "tree").items())
        self.tree_update_interval = tree_update_interval
        self.drop_in = tree is None and tree_update_interval is not None
        self._buffer: Optional[StatisticsBuffer] = None  # drop-in or gathered statistics
        #: set by a TreeRebuildHook(statistics_from="training"): see gather_statistics
        self.gathers_statistics = False
        self._schedule = self._new_schedule()
        self.iteration = 0
        self.add_to_recordable_attributes(list_of_names=["beta", "margin_scale"], is_stat=False)
        self.add_to_recordable_attributes(
            list_of_names=["num_triplets", "num_violating_triplets", "mean_margin"],
            is_stat=True,
        )

    @property
    def tree_options(self) -> Dict[str, Any]:
        """num_levels (L), linkage and level_start of every tree this loss uses."""
        return dict(self._tree_option_items)

    def get_default_distance(self):
        return LpDistance(p=2, power=2, normalize_embeddings=True)

    def get_default_reducer(self):
        return MeanReducer()

    def update_tree(self, tree: HierarchicalClassTree) -> None:
        """Use ``tree`` from now on; turns drop-in updates off. The tree must have
        been built with this loss's tree options."""
        check_tree_matches(self.tree_options, check_tree(tree), "the tree handed to the loss")
        super().update_tree(tree)
        self.disable_drop_in()

    def disable_drop_in(self) -> None:
        """Stop building own trees and drop the statistics gathered for them."""
        if self.drop_in:
            self._buffer = None
        self.drop_in = False

    def gather_statistics(self) -> None:
        """Keep the class statistics (n_c, S_c, Q_c) of the detached embeddings of
        every training-mode forward until :meth:`take_statistics`; turns drop-in
        updates off. A ``TreeRebuildHook(statistics_from="training")`` calls this
        when the loss is registered, and builds its trees from them."""
        self.disable_drop_in()
        self.gathers_statistics = True

    def take_statistics(self) -> Optional[ClassStatistics]:
        """The statistics gathered since the last call (None when no training
        batch came), and start afresh."""
        statistics = self.statistics
        self._buffer = None
        return statistics

    def forward(self, embeddings, labels=None, indices_tuple=None, ref_emb=None, ref_labels=None):
        check_metric_inputs(embeddings, labels, ref_emb, ref_labels)
        return super().forward(embeddings, labels, indices_tuple, ref_emb, ref_labels)

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        if embeddings.shape[0] == 0 or ref_emb.shape[0] == 0:
            # as PML's losses: nothing to compare. The iteration still counts, so
            # distributed ranks reach their drop-in rebuilds together.
            self._record_training_batch(embeddings, labels)
            return self._zero_losses(embeddings)
        self._warn_if_no_tree()
        remove_self = ref_labels is labels  # PML's rule (identity, not equality)
        tree = self.tree_on(embeddings.device)
        dist, alpha, offsets, sign = hinge_terms(
            self.distance,
            tree,
            self.beta,
            embeddings,
            labels,
            ref_emb,
            ref_labels,
            self.drop_in,
            self.margin_scale,
        )

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
        self._record_training_batch(embeddings, labels)
        return loss_dict

    def _zero_losses(self, embeddings):
        """PML's zero loss, in the dtype the loss has when triplets exist (float32
        for half-precision input), and connected to the embeddings' graph."""
        zero = upcast_half(embeddings).sum() * 0
        return {
            name: {"losses": zero, "indices": None, "reduction_type": "already_reduced"}
            for name in self.sub_loss_names()
        }

    def _all_triplets_mean(self, embeddings, dist, offsets, alpha, positive, negative, sign):
        """Mean over every (a, p, n) with positive[a, p] and negative[a, n]."""
        pos_count, neg_count = positive.sum(1), negative.sum(1)
        # a tensor, not read back: without triplets the sum is 0 and so the loss
        num_triplets = (pos_count * neg_count).sum()
        total, active = all_triplet_hinge_sum(dist, offsets, positive, negative, sign)
        if self.collect_stats:  # PML's statistics are numbers: read back (a sync on CUDA)
            self.num_triplets = int(num_triplets)
            self.num_violating_triplets = int(active)
            margin_sum = (pos_count * torch.where(negative, alpha, 0).sum(1)).sum()
            self.mean_margin = float(margin_sum) / max(self.num_triplets, 1)
        loss = total / (2 * num_triplets.clamp(min=1))
        return {
            "loss": {
                "losses": loss,
                "indices": None,
                "reduction_type": "already_reduced",
            }
        }

    def _per_triplet(self, embeddings, dist, offsets, alpha, triplets, sign):
        a, p, n = triplets
        if len(a) == 0:
            return self._zero_losses(embeddings)
        violation = sign * (dist[a, p] - dist[a, n]) + offsets[a, n]
        losses = 0.5 * torch.relu(violation)
        if self.collect_stats:
            self.num_triplets = len(a)
            self.num_violating_triplets = int((violation > 0).sum())
            self.mean_margin = float(alpha[a, n].mean())
        return {
            "loss": {
                "losses": losses,
                "indices": (a, p, n),
                "reduction_type": "triplet",
            }
        }

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

    def _new_schedule(self) -> Optional[RebuildSchedule]:
        interval = self.tree_update_interval
        if isinstance(interval, RebuildSchedule):
            return interval.fresh()  # the loss's own, never shared
        return None if interval is None else RebuildSchedule(interval)

    def _record_training_batch(self, embeddings, labels) -> None:
        """Add a training batch to the statistics (drop-in mode or gathering for a
        hook); in drop-in mode, build a new tree when the rebuild schedule says so."""
        if not (self.training and (self.drop_in or self.gathers_statistics)):
            return
        if self._buffer is None:
            self._buffer = StatisticsBuffer(
                embeddings.shape[1], self.distance.normalize_embeddings, device=embeddings.device
            )
        self._buffer.add(embeddings, labels)  # forward() has checked the inputs
        if not self.drop_in:
            return
        self.iteration += 1
        if not self._schedule.due(self.iteration):
            return
        # under torch.distributed every rank builds from the same reduced statistics
        statistics = combine_rank_statistics(self._buffer.flush())
        if not self._schedule.affordable(self.iteration, statistics.num_classes):
            return  # more classes than the time since the last tree pays for: gather on
        self._schedule.build_started()
        try:
            tree = HierarchicalClassTree(statistics, **self.tree_options)
        except ValueError:
            self._schedule.build_failed(self.iteration)
            return  # too few classes or samples so far: keep accumulating
        check_same_tree(tree)
        self._schedule.build_finished(self.iteration, tree.num_classes)
        self.tree, self._buffer = tree, None
        LOGGER.info("drop-in class tree at iteration %d: %s", self.iteration, tree.summary())

    @property
    def statistics(self) -> Optional[ClassStatistics]:
        """The statistics gathered since the last drop-in tree or the last
        :meth:`take_statistics` (None before any training batch)."""
        return None if self._buffer is None else self._buffer.flush()

    def get_extra_state(self) -> Dict[str, Any]:
        state = super().get_extra_state()
        state.update(
            statistics={} if self.statistics is None else self.statistics.state_dict(),
            iteration=torch.tensor(self.iteration),
            drop_in=torch.tensor(self.drop_in),
            schedule={} if self._schedule is None else self._schedule.state_dict(),
        )
        return state

    def set_extra_state(self, state: Dict[str, Any]) -> None:
        # parse everything before assigning anything: a bad state changes nothing
        tree = self.tree_from_extra_state(state)
        if tree is not None:
            check_tree_matches(self.tree_options, tree, "the saved tree")
        stats = state.get("statistics", {})
        buffer = None
        if stats:
            statistics = ClassStatistics.from_state_dict(stats)
            buffer = StatisticsBuffer.resume(statistics, self.distance.normalize_embeddings)
        iteration = int(state.get("iteration", 0))
        schedule = self._new_schedule()
        if schedule is not None and state.get("schedule"):
            schedule.load_state_dict(state["schedule"])
        # a loss made with tree_update_interval=None stays out of drop-in mode
        drop_in = bool(state.get("drop_in", self.drop_in)) and self.tree_update_interval is not None
        drop_in = drop_in and not self.gathers_statistics  # a hook takes the statistics
        self.tree, self._buffer = tree, buffer
        self.iteration, self.drop_in, self._schedule = iteration, drop_in, schedule
