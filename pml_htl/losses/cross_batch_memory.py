"""PML's CrossBatchMemory, told that HierarchicalTripletLoss supports ref_emb."""

from pytorch_metric_learning.losses import CrossBatchMemory as PMLCrossBatchMemory


class CrossBatchMemory(PMLCrossBatchMemory):
    """``pytorch_metric_learning.losses.CrossBatchMemory`` that also wraps
    :class:`HierarchicalTripletLoss` (PML checks the loss's name against a
    fixed list)."""

    @staticmethod
    def supported_losses():
        return PMLCrossBatchMemory.supported_losses() + ["HierarchicalTripletLoss"]
