"""Hierarchical Triplet Loss (Ge et al., ECCV 2018) for pytorch-metric-learning.

``from pml_htl import losses, miners, samplers`` gives every PML loss, miner
and sampler plus HTL's own, so a pipeline changes only its import line; the
other PML modules (distances, reducers, regularizers, trainers, testers,
utils, datasets) are there under the same names. HTL's tree-rebuild hook is
``pml_htl.tree_hooks.TreeRebuildHook``. The method: docs/method.md.
"""

__version__ = "0.1.0"

import importlib

from . import losses, miners, samplers, tree_hooks  # noqa: E402
from ._logging import WiringWarning  # noqa: E402
from .tree import ClassStatistics, HierarchicalClassTree  # noqa: E402
from .tree_hooks import TreeRebuildHook, chain_hooks  # noqa: E402
from .utils.accuracy_calculator import (  # noqa: E402
    RecallAtKAccuracyCalculator,
    make_accuracy_calculator,
)

#: PML's other modules, imported on first use (``pml_htl.distances`` ...).
_ON_DEMAND = ("datasets", "distances", "reducers", "regularizers", "testers", "trainers", "utils")

__all__ = [
    "ClassStatistics",
    "HierarchicalClassTree",
    "RecallAtKAccuracyCalculator",
    "TreeRebuildHook",
    "WiringWarning",
    "__version__",
    "chain_hooks",
    "losses",
    "make_accuracy_calculator",
    "miners",
    "samplers",
    "tree_hooks",
]


def __getattr__(name: str):
    if name in _ON_DEMAND:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
