"""Hierarchical Triplet Loss (Ge et al., ECCV 2018) for pytorch-metric-learning."""

__version__ = "0.1.0"

from .tree import ClassStatistics, HierarchicalClassTree  # noqa: E402

__all__ = ["ClassStatistics", "HierarchicalClassTree", "__version__"]
