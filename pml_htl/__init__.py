"""Hierarchical Triplet Loss (Ge et al., ECCV 2018) for pytorch-metric-learning.

``from pml_htl import losses, miners, samplers, hooks`` gives every PML loss,
miner and sampler plus HTL's own, so a pipeline changes only its import line.
"""

__version__ = "0.1.0"

from . import hooks, losses, miners, samplers  # noqa: E402
from .accuracy_calculator import RecallAtKAccuracyCalculator, make_accuracy_calculator  # noqa: E402
from .tree import ClassStatistics, HierarchicalClassTree  # noqa: E402

__all__ = [
    "ClassStatistics",
    "HierarchicalClassTree",
    "RecallAtKAccuracyCalculator",
    "__version__",
    "hooks",
    "losses",
    "make_accuracy_calculator",
    "miners",
    "samplers",
]
