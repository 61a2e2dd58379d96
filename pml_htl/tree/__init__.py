"""The class tree and its statistics: the one place that holds HTL's tree math.

This package depends on nothing above it in pml_htl (only on the argument
checks, the device policy of ``_sync`` and the logger). `TreeBuilder`
owns the statistics, the rebuild schedule and every build; the loss, miner,
sampler and hook consume trees through `TreeConsumer`.
"""

from .builder import TreeBuilder
from .class_statistics import ClassStatistics
from .consumer import (
    LabelFn,
    TreeConsumer,
    TreeConsumerMixin,
    TreeRequirements,
    check_tree,
)
from .hierarchical_class_tree import (
    DEFAULT_TREE_OPTIONS,
    MAX_SQUARED_DISTANCE,
    HierarchicalClassTree,
    check_tree_matches,
    check_tree_options,
    resolve_tree_options,
)
from .linkage import LINKAGES
from .rebuild_schedule import RebuildSchedule
from .statistics_buffer import StatisticsBuffer

__all__ = [
    "DEFAULT_TREE_OPTIONS",
    "ClassStatistics",
    "HierarchicalClassTree",
    "LINKAGES",
    "LabelFn",
    "MAX_SQUARED_DISTANCE",
    "RebuildSchedule",
    "StatisticsBuffer",
    "TreeBuilder",
    "TreeConsumer",
    "TreeConsumerMixin",
    "TreeRequirements",
    "check_tree",
    "check_tree_matches",
    "check_tree_options",
    "resolve_tree_options",
]
