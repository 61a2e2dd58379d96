"""Every pytorch-metric-learning sampler, plus AnchorNeighborSampler."""

from pytorch_metric_learning.samplers import *  # noqa: F401,F403

from .._pml_aliases import register_submodules
from .anchor_neighbor_sampler import AnchorNeighborSampler  # noqa: F401

register_submodules(__name__, "pytorch_metric_learning.samplers")
