"""Hierarchical Triplet Loss (Ge et al., ECCV 2018) for pytorch-metric-learning.

``from pml_htl import losses, miners, samplers`` gives every PML loss, miner
and sampler plus HTL's own, so a pipeline changes only its import line.
HTL's objects: `HierarchicalTripletLoss`, `HierarchicalTripletMiner`,
`AnchorNeighborSampler`, `TreeRebuildHook` and the class tree
(`HierarchicalClassTree`, built from `ClassStatistics`).
"""

__version__ = "0.1.0"

from . import losses, miners, samplers, tree_hooks
from ._logging import WiringWarning
from .losses import HierarchicalTripletLoss
from .miners import HierarchicalTripletMiner
from .samplers import AnchorNeighborSampler
from .tree import ClassStatistics, HierarchicalClassTree
from .tree_hooks import TreeRebuildHook, chain_hooks

__all__ = [
    "AnchorNeighborSampler",
    "ClassStatistics",
    "HierarchicalClassTree",
    "HierarchicalTripletLoss",
    "HierarchicalTripletMiner",
    "TreeRebuildHook",
    "WiringWarning",
    "__version__",
    "chain_hooks",
    "losses",
    "miners",
    "samplers",
    "tree_hooks",
]
