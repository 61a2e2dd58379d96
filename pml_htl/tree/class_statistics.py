"""Per-class sufficient statistics n_c, S_c, Q_c (docs/method.md, "Class statistics")."""

from __future__ import annotations

from typing import Dict, Optional

import torch

from .._validation import check_embeddings_and_labels


class ClassStatistics:
    """Count n_c, sum S_c and sum of squared norms Q_c of each class.

    The statistics are kept in float64 (``2 n Q - 2 ||S||^2`` cancels badly in
    low precision), add up across batches, shards and processes (``+`` and
    ``as_tensor``/``from_tensor`` for an all-reduce), and are everything the
    class tree needs: no pairwise loop over samples is ever made.

    Args:
        labels: sorted unique class labels, shape (C,), int64. Labels may be any
            integers, not necessarily 0..C-1.
        counts: n_c, shape (C,).
        sums: S_c, shape (C, D).
        squared_norms: Q_c, shape (C,).

    Example:
        >>> import torch
        >>> from pml_htl import ClassStatistics
        >>> labels = torch.tensor([3, 3, 7])  # int64, any integers
        >>> stats = ClassStatistics.from_embeddings(torch.randn(3, 4), labels)
        >>> stats = stats + ClassStatistics.from_embeddings(torch.randn(2, 4), torch.tensor([7, 9]))
        >>> stats.labels.tolist(), stats.counts.tolist()
        ([3, 7, 9], [2.0, 2.0, 1.0])
    """

    def __init__(
        self,
        labels: torch.Tensor,
        counts: torch.Tensor,
        sums: torch.Tensor,
        squared_norms: torch.Tensor,
    ):
        labels = torch.as_tensor(labels)
        if labels.ndim != 1 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise TypeError(
                f"labels must be a 1-D integer tensor, got dtype {labels.dtype} "
                f"and shape {tuple(labels.shape)}"
            )
        C = labels.shape[0]
        if sums.ndim != 2 or sums.shape[0] != C:
            raise ValueError(f"sums must have shape (C={C}, D), got {tuple(sums.shape)}")
        if counts.shape != (C,) or squared_norms.shape != (C,):
            raise ValueError(
                f"counts and squared_norms must have shape ({C},), got "
                f"{tuple(counts.shape)} and {tuple(squared_norms.shape)}"
            )
        if C > 1 and not bool((labels[1:] > labels[:-1]).all()):
            raise ValueError("labels must be sorted and unique")
        device = sums.device
        self.labels = labels.to(device=device, dtype=torch.long)
        self.counts = counts.to(device=device, dtype=torch.float64)
        self.sums = sums.to(dtype=torch.float64)
        self.squared_norms = squared_norms.to(device=device, dtype=torch.float64)

    @classmethod
    def empty(cls, embedding_size: int, device: Optional[torch.device] = None) -> "ClassStatistics":
        """Statistics of no sample at all, to be filled with `update`."""
        if not isinstance(embedding_size, int) or embedding_size < 1:
            raise ValueError(f"embedding_size must be a positive int, got {embedding_size!r}")
        f64 = dict(dtype=torch.float64, device=device)
        return cls(
            torch.zeros(0, dtype=torch.long, device=device),
            torch.zeros(0, **f64),
            torch.zeros(0, embedding_size, **f64),
            torch.zeros(0, **f64),
        )

    @classmethod
    def zeros(
        cls, labels: torch.Tensor, embedding_size: int, device: Optional[torch.device] = None
    ) -> "ClassStatistics":
        """Empty statistics over a known class index, so every later
        `update` adds in place; drop unseen classes with `nonempty`."""
        labels = torch.unique(torch.as_tensor(labels, device=device).long())
        C = labels.shape[0]
        f64 = dict(dtype=torch.float64, device=labels.device)
        return cls(
            labels,
            torch.zeros(C, **f64),
            torch.zeros(C, embedding_size, **f64),
            torch.zeros(C, **f64),
        )

    def nonempty(self) -> "ClassStatistics":
        """These statistics without the classes that have no sample."""
        seen = self.counts > 0
        if bool(seen.all()):
            return self
        return ClassStatistics(
            self.labels[seen], self.counts[seen], self.sums[seen], self.squared_norms[seen]
        )

    def with_missing_from(self, other: "ClassStatistics") -> "ClassStatistics":
        """These statistics, and ``other``'s for the classes that have no sample
        here (e.g. a previous tree's, for classes a training epoch did not draw)."""
        current = self.nonempty()
        other = other.nonempty().to(self.device)
        missing = ~torch.isin(other.labels, current.labels)
        if not bool(missing.any()):
            return current
        kept = ClassStatistics(
            other.labels[missing],
            other.counts[missing],
            other.sums[missing],
            other.squared_norms[missing],
        )
        return current + kept

    @classmethod
    def from_embeddings(
        cls, embeddings: torch.Tensor, labels: torch.Tensor, normalize: bool = True
    ) -> "ClassStatistics":
        """Statistics of one batch (or a whole data set) of embeddings.

        Args:
            embeddings: (N, D) floating point tensor; never modified.
            labels: (N,) integer tensor.
            normalize: L2-normalise each embedding first, as the loss's default
                distance does.
        """
        check_embeddings_and_labels(embeddings, labels)
        x = _samples(embeddings, normalize)
        return cls._group(x, labels.to(x.device))

    @classmethod
    def _group(
        cls, x: torch.Tensor, labels: torch.Tensor, squared_norms: Optional[torch.Tensor] = None
    ) -> "ClassStatistics":
        """Per-class sums of prepared rows (detached, normalised as wanted), summed
        in the rows' dtype and stored in float64. ``squared_norms``: each row's
        ||r||^2 when the caller knows it (default: computed from ``x``)."""
        if squared_norms is None:
            squared_norms = (x * x).sum(1)
        classes, inverse = torch.unique(labels, sorted=True, return_inverse=True)
        C, D = classes.shape[0], x.shape[1]
        counts = torch.zeros(C, dtype=torch.float64, device=x.device)
        counts.index_add_(0, inverse, torch.ones_like(inverse, dtype=torch.float64))
        sums = torch.zeros(C, D, dtype=x.dtype, device=x.device)
        sums.index_add_(0, inverse, x)
        per_class = torch.zeros(C, dtype=x.dtype, device=x.device)
        per_class.index_add_(0, inverse, squared_norms)
        return cls(classes, counts, sums, per_class)

    def update(
        self, embeddings: torch.Tensor, labels: torch.Tensor, normalize: bool = True
    ) -> "ClassStatistics":
        """Add a batch in place and return ``self``. Nothing changes if it fails."""
        check_embeddings_and_labels(embeddings, labels)
        if embeddings.shape[1] != self.embedding_size:
            raise ValueError(
                f"embeddings must have embedding size {self.embedding_size}, "
                f"got {embeddings.shape[1]}"
            )
        x = _samples(embeddings, normalize).to(self.device)
        return self.add_(ClassStatistics._group(x, labels.to(self.device)))

    def add_(self, other: "ClassStatistics") -> "ClassStatistics":
        """``self += other`` in place (O(other) when its classes are all known)."""
        other = other.to(self.device)
        if self.num_classes and other.embedding_size == self.embedding_size:
            index = torch.searchsorted(self.labels, other.labels).clamp(max=self.num_classes - 1)
            if torch.equal(self.labels[index], other.labels):
                self.counts.index_add_(0, index, other.counts)
                self.sums.index_add_(0, index, other.sums)
                self.squared_norms.index_add_(0, index, other.squared_norms)
                return self
        new = self + other
        self.labels, self.counts = new.labels, new.counts
        self.sums, self.squared_norms = new.sums, new.squared_norms
        return self

    def __add__(self, other: "ClassStatistics") -> "ClassStatistics":
        if not isinstance(other, ClassStatistics):
            return NotImplemented
        if other.embedding_size != self.embedding_size:
            raise ValueError(
                f"cannot add statistics of embedding size {other.embedding_size} "
                f"to statistics of embedding size {self.embedding_size}"
            )
        other = other.to(self.device)
        classes, inverse = torch.unique(
            torch.cat([self.labels, other.labels]), sorted=True, return_inverse=True
        )
        C, mine, theirs = classes.shape[0], inverse[: self.num_classes], inverse[self.num_classes :]

        def merged(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            # each class once per side: a copy, then an add (no concatenated copy)
            out = torch.zeros((C,) + a.shape[1:], dtype=a.dtype, device=a.device)
            return out.index_copy_(0, mine, a).index_add_(0, theirs, b)

        return ClassStatistics(
            classes,
            merged(self.counts, other.counts),
            merged(self.sums, other.sums),
            merged(self.squared_norms, other.squared_norms),
        )

    @property
    def num_classes(self) -> int:
        return self.labels.shape[0]

    @property
    def embedding_size(self) -> int:
        return self.sums.shape[1]

    @property
    def device(self) -> torch.device:
        return self.sums.device

    def to(self, device) -> "ClassStatistics":
        device = torch.device(device)
        if device == self.device:
            return self
        return ClassStatistics(
            self.labels.to(device),
            self.counts.to(device),
            self.sums.to(device),
            self.squared_norms.to(device),
        )

    def as_tensor(self) -> torch.Tensor:
        """(C, D + 2) float64 tensor [n_c, Q_c, S_c], ready for one all-reduce."""
        return torch.cat([self.counts[:, None], self.squared_norms[:, None], self.sums], 1)

    @classmethod
    def from_tensor(cls, labels: torch.Tensor, packed: torch.Tensor) -> "ClassStatistics":
        """Inverse of `as_tensor`."""
        return cls(labels, packed[:, 0], packed[:, 2:], packed[:, 1])

    def state_dict(self) -> Dict[str, torch.Tensor]:
        return {
            "labels": self.labels,
            "counts": self.counts,
            "sums": self.sums,
            "squared_norms": self.squared_norms,
        }

    @classmethod
    def from_state_dict(cls, state: Dict[str, torch.Tensor]) -> "ClassStatistics":
        """Statistics of copies of the state's tensors (updates never reach ``state``)."""
        keys = ("labels", "counts", "sums", "squared_norms")
        return cls(*(torch.as_tensor(state[k]).clone() for k in keys))

    def __repr__(self) -> str:
        return (
            f"ClassStatistics(num_classes={self.num_classes}, "
            f"embedding_size={self.embedding_size}, "
            f"num_samples={int(self.counts.sum().item())})"
        )


def _samples(embeddings: torch.Tensor, normalize: bool) -> torch.Tensor:
    """Detached float64 copies of the embeddings, L2-normalised if asked."""
    x = embeddings.detach().to(torch.float64)
    if normalize:  # as torch.nn.functional.normalize, in fewer passes
        x = x / torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_(min=1e-12)
    return x
