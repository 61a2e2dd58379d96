"""Every pytorch-metric-learning miner, plus HierarchicalTripletMiner.

``from pml_htl import miners`` replaces ``from pytorch_metric_learning import miners``.
"""

from pytorch_metric_learning.miners import *  # noqa: F401,F403

from .hierarchical_triplet_miner import HierarchicalTripletMiner  # noqa: F401
