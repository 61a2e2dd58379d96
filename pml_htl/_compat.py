"""Every name that differs between pytorch-metric-learning 2.9 and 3.0, in one place.

The loss, miner, sampler, tree and hook use PML only through contracts both
versions share (``BaseMetricLossFunction.compute_loss``, ``BaseMiner.mine``,
the distance objects, ``MeanReducer``) and through this module. PML 3 passes
``ref_emb=None`` to ``compute_loss`` for self-comparison, drops recorded
statistics (``add_to_recordable_attributes``, ``collect_stats``), names the
default hooks ``default_distance``/``default_reducer``, returns miner output
as ``TripletIndices`` and keeps ``common_functions`` private.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Optional, Tuple

import torch

#: The installed PML's major version (``pytorch_metric_learning.__version__`` is gone in 3).
PML_MAJOR = int(version("pytorch-metric-learning").split(".")[0])


def reference_set(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    ref_emb: Optional[torch.Tensor],
    ref_labels: Optional[torch.Tensor],
) -> Tuple[torch.Tensor, torch.Tensor, bool]:
    """(ref_emb, ref_labels, remove_self) as ``compute_loss``/``mine`` receive them.

    PML 2 fills a missing reference set with the batch itself and removes the
    pairs (i, i) only when ``ref_labels is labels`` (identity, not equality);
    PML 3 passes ``ref_emb=None`` for self-comparison.
    """
    if ref_emb is None:
        return embeddings, labels, True
    return ref_emb, ref_labels, ref_labels is labels


class DefaultDistanceNames:
    """PML 2's ``get_default_distance`` and PML 3's ``default_distance``, both
    answered by the class's ``htl_default_distance``."""

    def get_default_distance(self):
        return self.htl_default_distance()

    def default_distance(self):
        return self.htl_default_distance()


class DefaultReducerNames:
    """PML 2's ``get_default_reducer`` and PML 3's ``default_reducer``, both
    answered by the class's ``htl_default_reducer``."""

    def get_default_reducer(self):
        return self.htl_default_reducer()

    def default_reducer(self):
        return self.htl_default_reducer()


def record_attributes(module, names, is_stat: bool) -> None:
    """PML 2's ``add_to_recordable_attributes`` (record-keeper's logs); nothing in PML 3."""
    add = getattr(module, "add_to_recordable_attributes", None)
    if add is not None:
        add(list_of_names=list(names), is_stat=is_stat)


def collects_stats(module) -> bool:
    """Whether PML 2's ``collect_stats`` is on (never in PML 3)."""
    return bool(getattr(module, "collect_stats", False))


def loss_term(losses: torch.Tensor, indices, reduction_type: str) -> dict:
    """One term of ``compute_loss``'s output dict."""
    return {"losses": losses, "indices": indices, "reduction_type": reduction_type}


def triplet_indices(a: torch.Tensor, p: torch.Tensor, n: torch.Tensor):
    """A miner's (a, p, n): PML 3's ``TripletIndices`` (a named tuple), PML 2's tuple."""
    if PML_MAJOR >= 3:
        from pytorch_metric_learning.types import TripletIndices

        return TripletIndices(a, p, n)
    return a, p, n


def supported_losses(base: type) -> list:
    """PML 2's ``CrossBatchMemory`` checks the wrapped loss's class name
    against a list; HTL supports ``ref_emb``."""
    return base.supported_losses() + ["HierarchicalTripletLoss"]


def to_device(data, device: torch.device):
    """``data`` (a tensor, or a list/tuple/dict of them) on ``device``
    (PML 2's ``c_f.to_device``, private in PML 3)."""
    if torch.is_tensor(data):
        return data.to(device)
    if isinstance(data, (list, tuple)):
        return type(data)(to_device(x, device) for x in data)
    if isinstance(data, dict):
        return {k: to_device(v, device) for k, v in data.items()}
    return data


def trainer_labels(labels, trainer):
    """The labels a PML 2 trainer's loss sees for a data set's labels (its
    ``label_hierarchy_level`` and ``label_mapper``). PML 3 has no trainers."""
    from pytorch_metric_learning.utils import common_functions as c_f

    return c_f.process_label(labels, trainer.label_hierarchy_level, trainer.label_mapper)
