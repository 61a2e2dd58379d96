"""PML's cross_batch_memory module, with CrossBatchMemory told that
HierarchicalTripletLoss supports ref_emb."""

from pytorch_metric_learning.losses.cross_batch_memory import *  # noqa: F401,F403
from pytorch_metric_learning.losses.cross_batch_memory import (
    CrossBatchMemory as PMLCrossBatchMemory,
)


class CrossBatchMemory(PMLCrossBatchMemory):
    """``pytorch_metric_learning.losses.CrossBatchMemory`` that also wraps
    `HierarchicalTripletLoss` (PML checks the loss's name against a
    fixed list)."""

    @staticmethod
    def supported_losses():
        return PMLCrossBatchMemory.supported_losses() + ["HierarchicalTripletLoss"]
