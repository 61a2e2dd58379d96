"""Every pytorch-metric-learning sampler, plus AnchorNeighborSampler."""

from pytorch_metric_learning.samplers import *  # noqa: F401,F403

from .anchor_neighbor_sampler import AnchorNeighborSampler  # noqa: F401
