"""Every pytorch-metric-learning loss, plus HierarchicalTripletLoss.

``from pml_htl import losses`` replaces ``from pytorch_metric_learning import losses``.
"""

from pytorch_metric_learning.losses import *  # noqa: F401,F403

from .cross_batch_memory import CrossBatchMemory  # noqa: F401
from .hierarchical_triplet_loss import HierarchicalTripletLoss  # noqa: F401
