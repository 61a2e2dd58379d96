"""Every pytorch-metric-learning sampler, plus AnchorNeighborSampler.

``from pml_htl import samplers`` replaces ``from pytorch_metric_learning import samplers``.
PML's own samplers are imported on first use: PML's sampler package imports
faiss and scikit-learn (for ``TuplesToWeightsSampler``), which ``import pml_htl``
does not need.
"""

import importlib

from .anchor_neighbor_sampler import AnchorNeighborSampler  # noqa: F401

_PML = "pytorch_metric_learning.samplers"


def __getattr__(name: str):
    if not name.startswith("_"):
        value = getattr(importlib.import_module(_PML), name, None)
        if value is not None:
            globals()[name] = value
            return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    pml = importlib.import_module(_PML)
    return sorted(set(globals()) | {n for n in vars(pml) if not n.startswith("_")})
