"""Class statistics gathered batch by batch at a small cost per batch."""

from __future__ import annotations

from typing import Optional

import torch

from .class_statistics import ClassStatistics


class StatisticsBuffer:
    """Queues training batches and adds them to `ClassStatistics` in bulk.

    A batch is only copied into a buffer; once ``capacity`` rows are queued
    (or the statistics are read) they are normalised and summed per class in
    the buffer's dtype, and those per-class sums are added to the float64
    n_c, S_c, Q_c. So the per-step cost is one copy, and float64 work is per
    class, not per sample. With the default float32 buffer a class's float32
    sum spans one buffer at most (a relative error near 1e-7).

    Args:
        embedding_size: D.
        normalize: L2-normalise each embedding first, as the loss's distance does.
        capacity: rows queued before they are added (grown to the largest batch).
        device: where the statistics live until the first batch; then the
            buffer and the statistics live on the batches' device.

    The buffer is float64 when the first batch is float64, float32 otherwise.
    """

    def __init__(
        self,
        embedding_size: int,
        normalize: bool = True,
        capacity: int = 8192,
        device: Optional[torch.device] = None,
    ):
        self.normalize = normalize
        self.capacity = capacity
        self.statistics = ClassStatistics.empty(embedding_size, device)
        self._rows: Optional[torch.Tensor] = None  # allocated by the first batch
        self._labels: Optional[torch.Tensor] = None
        self._queued = 0

    @classmethod
    def resume(cls, statistics: ClassStatistics, normalize: bool = True) -> "StatisticsBuffer":
        """A buffer that goes on adding to ``statistics`` (e.g. from a checkpoint)."""
        buffer = cls(statistics.embedding_size, normalize, device=statistics.device)
        buffer.statistics = statistics
        return buffer

    def add(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        """Queue a batch; the caller has checked it (finite, 2-D, matching labels)."""
        n = embeddings.shape[0]
        if self._rows is not None and self._rows.device != embeddings.device:
            self.flush()  # the model moved: follow it (the statistics too)
            self._rows = self._labels = None
        if self._rows is None:
            # statistics resumed from a checkpoint may sit on another device
            self.statistics = self.statistics.to(embeddings.device)
            dtype = torch.float64 if embeddings.dtype == torch.float64 else torch.float32
            shape, device = (max(self.capacity, n), embeddings.shape[1]), embeddings.device
            self._rows = torch.empty(shape, dtype=dtype, device=device)
            self._labels = torch.empty(shape[0], dtype=torch.long, device=device)
        if self._queued + n > self._rows.shape[0]:
            self.flush()
        if n > self._rows.shape[0]:  # larger than any batch so far: grow once
            self._rows = self._rows.new_empty((n, self._rows.shape[1]))
            self._labels = self._labels.new_empty(n)
        self._rows[self._queued : self._queued + n] = embeddings.detach()
        self._labels[self._queued : self._queued + n] = labels
        self._queued += n

    def __getstate__(self):
        """Pickle and deepcopy carry the statistics, not the scratch rows."""
        self.flush()
        return dict(self.__dict__, _rows=None, _labels=None)

    def flush(self) -> ClassStatistics:
        """Add everything queued and return the statistics."""
        if not self._queued:
            return self.statistics
        x, labels = self._rows[: self._queued], self._labels[: self._queued]
        squared_norms = torch.linalg.vector_norm(x, dim=1)
        if self.normalize:
            x.div_(squared_norms.clamp(min=1e-12)[:, None])  # the buffer's own rows
            squared_norms = (squared_norms > 0).to(x.dtype)  # unit vectors; zero rows stay 0
        else:
            squared_norms.square_()
        self.statistics.add_(ClassStatistics._group(x, labels, squared_norms))
        self._queued = 0
        return self.statistics
