"""The class tree and its statistics: the one place that holds HTL's tree math."""

from .class_statistics import ClassStatistics
from .hierarchical_class_tree import (
    MAX_SQUARED_DISTANCE,
    HierarchicalClassTree,
    check_tree_options,
)
from .linkage import LINKAGES
from .statistics_buffer import StatisticsBuffer

__all__ = [
    "ClassStatistics",
    "HierarchicalClassTree",
    "LINKAGES",
    "MAX_SQUARED_DISTANCE",
    "StatisticsBuffer",
    "check_tree_options",
]
