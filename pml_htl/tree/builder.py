"""TreeBuilder: the one owner of class statistics, the rebuild schedule and tree builds."""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple

import torch

from .._logging import LOGGER
from .class_statistics import ClassStatistics
from .distributed import check_same_tree, combine_rank_statistics
from .hierarchical_class_tree import HierarchicalClassTree, resolve_tree_options
from .rebuild_schedule import RebuildSchedule
from .statistics_buffer import StatisticsBuffer


class TreeBuilder:
    """Gathers class statistics (n_c, S_c, Q_c) from training batches and builds trees.

    Drop-in mode is a builder with a schedule, owned by the loss: every
    training forward calls `observe`, which builds a tree when the
    schedule says so. ``TreeRebuildHook(statistics_from="training")`` owns a
    builder without a schedule: the registered loss feeds it, and the hook
    builds each tree from what it gathered. The hook's embedding pass builds
    through `build` too, so every tree comes from this one code path.

    Args:
        tree_options: L and the open choices of every tree built:
            ``num_levels``, ``linkage``, ``level_start`` (defaults for those
            left out).
        normalize: L2-normalise embeddings before the statistics, as the
            loss's distance does.
        schedule: when `observe` builds a tree; ``None``: it only gathers.

    Under torch.distributed the ranks' statistics are combined (one
    all-reduce) before each build, so that every rank builds the same tree.

    Example:
        >>> import torch
        >>> from pml_htl.tree import RebuildSchedule, TreeBuilder
        >>> builder = TreeBuilder(schedule=RebuildSchedule(2))  # a tree every 2 batches
        >>> labels = torch.arange(4).repeat(4)  # int64 class labels
        >>> builder.observe(torch.randn(16, 8), labels) is None
        True
        >>> builder.observe(torch.randn(16, 8), labels).num_classes
        4
    """

    def __init__(
        self,
        tree_options: Optional[Mapping[str, Any]] = None,
        normalize: bool = True,
        schedule: Optional[RebuildSchedule] = None,
    ):
        self.tree_options = resolve_tree_options(dict(tree_options or {}))
        self.normalize = bool(normalize)
        self.schedule = schedule
        #: training batches seen (counted with a schedule only)
        self.iteration = 0
        self._buffer: Optional[StatisticsBuffer] = None

    @property
    def statistics(self) -> Optional[ClassStatistics]:
        """What was gathered since the last build or `take_statistics`
        (None before any batch)."""
        return None if self._buffer is None else self._buffer.flush()

    def take_statistics(self) -> Optional[ClassStatistics]:
        """The gathered statistics, and start afresh."""
        statistics, self._buffer = self.statistics, None
        return statistics

    @torch.compiler.disable  # Python bookkeeping and, now and then, a build: outside the graph
    def observe(
        self, embeddings: torch.Tensor, labels: torch.Tensor
    ) -> Optional[HierarchicalClassTree]:
        """Add a training batch (checked by the caller); return a new tree when
        the schedule builds one, else None."""
        if self._buffer is None:
            self._buffer = StatisticsBuffer(
                embeddings.shape[1], self.normalize, device=embeddings.device
            )
        self._buffer.add(embeddings, labels)
        if self.schedule is None:
            return None
        self.iteration += 1
        if not self.schedule.due(self.iteration):
            return None
        # under torch.distributed every rank builds from the same reduced statistics
        statistics = combine_rank_statistics(self._buffer.flush())
        if not self.schedule.affordable(self.iteration, statistics.num_classes):
            return None  # more classes than the time since the last tree pays for: gather on
        self.schedule.build_started()
        try:
            tree = HierarchicalClassTree(statistics, **self.tree_options)
        except ValueError:
            self.schedule.build_failed(self.iteration)
            return None  # too few classes or samples so far: keep gathering
        check_same_tree(tree)
        self.schedule.build_finished(self.iteration, tree.num_classes)
        self._buffer = None
        LOGGER.info("drop-in class tree at iteration %d: %s", self.iteration, tree.summary())
        return tree

    def build(self, statistics: ClassStatistics) -> HierarchicalClassTree:
        """A tree of ``statistics`` (e.g. of an embedding pass), the same on every rank."""
        tree = HierarchicalClassTree(statistics, **self.tree_options)
        check_same_tree(tree)
        return tree

    def statistics_since(self, previous: HierarchicalClassTree) -> Tuple[ClassStatistics, str]:
        """The statistics gathered since ``previous`` was built, combined across
        ranks, with ``previous``'s for the classes no batch brought; and a
        description for the log. Nothing is taken: see `take_statistics`."""
        gathered = self.statistics
        if gathered is None:  # no training step: every class keeps its statistics
            gathered = ClassStatistics.empty(
                previous.statistics.embedding_size, previous.statistics.device
            )
        gathered = combine_rank_statistics(gathered).nonempty()
        statistics = gathered.with_missing_from(previous.statistics)
        kept = statistics.num_classes - gathered.num_classes
        source = (
            f"statistics of {int(gathered.counts.sum())} training-step embeddings, "
            f"{kept} unseen classes kept from the previous tree"
        )
        return statistics, source

    def state_dict(self) -> Dict[str, Any]:
        """Plain tensors: the gathered statistics, the iteration and the schedule."""
        statistics = self.statistics
        return {
            "statistics": {} if statistics is None else statistics.state_dict(),
            "iteration": torch.tensor(self.iteration),
            "schedule": {} if self.schedule is None else self.schedule.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Go on from ``state``; a bad state raises and changes nothing."""
        buffer = None
        if state.get("statistics"):
            statistics = ClassStatistics.from_state_dict(state["statistics"])
            buffer = StatisticsBuffer.resume(statistics, self.normalize)
        iteration = int(state.get("iteration", 0))
        schedule = None if self.schedule is None else self.schedule.fresh()
        if schedule is not None and state.get("schedule"):
            schedule.load_state_dict(state["schedule"])
        self._buffer, self.iteration, self.schedule = buffer, iteration, schedule

    def __repr__(self) -> str:
        mode = "gathers only" if self.schedule is None else f"schedule {self.schedule.interval!r}"
        return f"TreeBuilder({self.tree_options}, normalize={self.normalize}, {mode})"
