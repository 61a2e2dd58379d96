"""Every pytorch-metric-learning miner, plus HierarchicalTripletMiner."""

from pytorch_metric_learning.miners import *  # noqa: F401,F403

from .._pml_aliases import register_submodules
from .hierarchical_triplet_miner import HierarchicalTripletMiner  # noqa: F401

register_submodules(__name__, "pytorch_metric_learning.miners")
