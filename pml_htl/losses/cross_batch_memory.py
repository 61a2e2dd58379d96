"""PML's cross_batch_memory module, with CrossBatchMemory told that
HierarchicalTripletLoss supports ref_emb."""

from pytorch_metric_learning.losses.cross_batch_memory import *  # noqa: F401,F403
from pytorch_metric_learning.losses.cross_batch_memory import (
    CrossBatchMemory as PMLCrossBatchMemory,
)

from .._compat import supported_losses


class CrossBatchMemory(PMLCrossBatchMemory):
    """``pytorch_metric_learning.losses.CrossBatchMemory`` that also wraps
    `HierarchicalTripletLoss` (PML 2 checks the loss's name against a fixed list).

    Example:
        >>> import torch
        >>> from pml_htl import losses
        >>> loss_func = losses.CrossBatchMemory(
        ...     losses.HierarchicalTripletLoss(), embedding_size=8, memory_size=64
        ... )  # register loss_func.loss with the TreeRebuildHook
        >>> labels = torch.arange(4).repeat(4)  # int64 class labels
        >>> loss = loss_func(torch.randn(16, 8), labels)
    """

    @staticmethod
    def supported_losses():
        return supported_losses(PMLCrossBatchMemory)
