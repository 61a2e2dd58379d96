"""Agglomerative clustering of classes and the cut of its dendrogram at d_l.

All three linkages are reducible: a pair of reciprocal nearest neighbours is
merged in the exact dendrogram, and merging it changes no other cluster's
nearest neighbour. So every round merges all reciprocal pairs at once and
re-searches only the clusters whose neighbour was merged, with whole-tensor
operations (on any device) instead of one Python step per merge.

Two backends give the distances:
- ``DenseBackend``: the (C, C) class-distance matrix, updated by
  Lance-Williams (average weighted by sample counts, single, complete).
- ``StatisticsBackend`` (average linkage only): no matrix at all. A node is
  its sufficient statistics (n, S, Q) and its distance to another node is
  Q_A/n_A + Q_B/n_B - 2 mu_A . mu_B, searched blockwise. Memory O(C D), for
  class counts whose C x C matrix does not fit.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import torch

LINKAGES = ("average", "single", "complete")

#: Class counts up to which the dense backend keeps its matrix in float64.
_FLOAT64_MAX_CLASSES = 4096
_BLOCK_ELEMENTS = 1 << 24


def _block_rows(num_cols: int) -> int:
    return max(1, _BLOCK_ELEMENTS // max(num_cols, 1))


class DenseBackend:
    """Class distances in one matrix; Lance-Williams updates on merges.

    Nodes are named by class index outside and by matrix position inside: the
    matrix is compacted to the live nodes whenever a quarter of its rows are
    merged away, so later rounds work on smaller matrices.
    """

    def __init__(self, distances: torch.Tensor, sizes: torch.Tensor, linkage: str):
        if linkage not in LINKAGES:
            raise ValueError(f"linkage must be one of {LINKAGES}, got {linkage!r}")
        self.linkage = linkage
        self.D = distances  # owned and modified in place
        self.D.fill_diagonal_(float("inf"))
        device = distances.device
        n = distances.shape[0]
        self.size = sizes.to(device=device, dtype=torch.float64).clone()
        self.ids = torch.arange(n, device=device)  # matrix position -> class index
        self.pos = torch.arange(n, device=device)  # class index -> matrix position
        # merged-away nodes are masked when read until the next compaction
        self.gone = torch.zeros(n, dtype=torch.bool, device=device)
        self.num_gone = 0

    def nearest(self, rows: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        d, idx = [], []
        rows = self.pos[rows]
        step = _block_rows(self.D.shape[1])
        for start in range(0, rows.shape[0], step):
            block = self.D.index_select(0, rows[start : start + step])
            if self.num_gone:
                block.masked_fill_(self.gone, float("inf"))
            value, index = block.min(1)
            d.append(value.double())
            idx.append(self.ids[index])
        return torch.cat(d), torch.cat(idx)

    def height(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.D[self.pos[a], self.pos[b]].double()

    def _combine(self, x: torch.Tensor, y: torch.Tensor, wx, wy) -> torch.Tensor:
        if self.linkage == "single":
            return torch.minimum(x, y)
        if self.linkage == "complete":
            return torch.maximum(x, y)
        wx, wy = wx.to(x.dtype), wy.to(x.dtype)
        return (wx * x + wy * y) / (wx + wy)

    def merge(self, a: torch.Tensor, b: torch.Tensor) -> None:
        D, size = self.D, self.size
        a, b = self.pos[a], self.pos[b]
        # The matrix stays symmetric, so a merged node's column is its row.
        new = self._combine(
            D.index_select(0, a), D.index_select(0, b), size[a, None], size[b, None]
        )
        # distances between two nodes merged in this same round: combine again
        new[:, a] = self._combine(new[:, a], new[:, b], size[None, a], size[None, b])
        new[torch.arange(a.shape[0], device=a.device), a] = float("inf")
        D.index_copy_(0, a, new)
        D.index_copy_(1, a, new.T.contiguous())
        self.gone[b] = True
        self.num_gone += b.shape[0]
        size[a] += size[b]
        if 4 * self.num_gone >= D.shape[0]:
            self._compact()

    def _compact(self) -> None:
        keep = torch.nonzero(~self.gone).squeeze(1)
        self.D = self.D.index_select(0, keep).index_select(1, keep)
        self.size = self.size[keep]
        self.pos[self.ids[keep]] = torch.arange(keep.shape[0], device=keep.device)
        self.ids = self.ids[keep]
        self.gone = torch.zeros(keep.shape[0], dtype=torch.bool, device=keep.device)
        self.num_gone = 0


class StatisticsBackend:
    """Average linkage from sufficient statistics, without a distance matrix."""

    def __init__(self, counts: torch.Tensor, sums: torch.Tensor, squared_norms: torch.Tensor):
        self.n = counts.double().clone()
        self.S = sums.double().clone()
        self.Q = squared_norms.double().clone()
        self.active = torch.ones_like(self.n, dtype=torch.bool)
        # float32 copies of the means and Q/n for the search
        self.mu32 = torch.empty(self.S.shape, dtype=torch.float32, device=self.S.device)
        self.a32 = torch.empty(self.n.shape, dtype=torch.float32, device=self.S.device)
        self._refresh(torch.arange(self.n.shape[0], device=self.n.device))

    def _refresh(self, rows: torch.Tensor) -> None:
        self.mu32[rows] = (self.S[rows] / self.n[rows, None]).float()
        self.a32[rows] = (self.Q[rows] / self.n[rows]).float()

    def _exact(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        mu_a, mu_b = self.S[a] / self.n[a, None], self.S[b] / self.n[b, None]
        return (self.Q[a] / self.n[a] + self.Q[b] / self.n[b] - 2 * (mu_a * mu_b).sum(1)).clamp(
            min=0
        )

    def nearest(self, rows: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        cols = torch.nonzero(self.active).squeeze(1)
        mu_c, a_c = self.mu32[cols], self.a32[cols]
        best = []
        step = _block_rows(cols.shape[0])
        for start in range(0, rows.shape[0], step):
            r = rows[start : start + step]
            d = self.a32[r, None] + a_c[None, :] - 2 * self.mu32[r] @ mu_c.T
            d[r[:, None] == cols[None, :]] = float("inf")
            best.append(cols[d.argmin(1)])
        idx = torch.cat(best)
        # exact float64 distances for the winners (the search ran in float32)
        return self._exact(rows, idx), idx

    def height(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self._exact(a, b)

    def merge(self, a: torch.Tensor, b: torch.Tensor) -> None:
        self.n[a] += self.n[b]
        self.S[a] += self.S[b]
        self.Q[a] += self.Q[b]
        self.active[b] = False
        self._refresh(a)


def agglomerate(backend, num_classes: int, device=None, initial=None) -> np.ndarray:
    """Run reciprocal-nearest-neighbour rounds until one cluster is left.

    Args:
        initial: each class's nearest class (a (C,) index tensor), when already
            known; saves the first full search.

    Returns:
        (C - 1, 3) float64 array of merges [i, j, height]; i and j are class
        indices standing for the two merged nodes (the node keeps index i).
    """
    C = num_classes
    merges = []
    if C < 2:
        return np.zeros((0, 3))
    all_rows = torch.arange(C, device=device)
    active = torch.ones(C, dtype=torch.bool, device=device)
    if initial is None:
        nn_d, nn = backend.nearest(all_rows)
    else:
        nn = initial.to(device).clone()
        nn_d = backend.height(all_rows, nn)
    remaining = C
    while remaining > 1:
        rows = torch.nonzero(active).squeeze(1)
        partner = nn[rows]
        reciprocal = (nn[partner] == rows) & (rows < partner)
        a, b = rows[reciprocal], partner[reciprocal]
        if a.numel() == 0:
            # float rounding can hide every reciprocal pair: take the closest pair
            i = rows[nn_d[rows].argmin()]
            a, b = torch.minimum(i, nn[i]).view(1), torch.maximum(i, nn[i]).view(1)
        heights = backend.height(a, b)
        merges.append(torch.stack([a.double(), b.double(), heights], 1).cpu())
        backend.merge(a, b)
        active[b] = False
        remaining -= int(a.numel())
        if remaining <= 1:
            break
        merged = torch.zeros(C, dtype=torch.bool, device=device)
        merged[a] = True
        merged[b] = True
        stale = active & merged[nn]
        stale[a] = True
        rows = torch.nonzero(stale).squeeze(1)
        nn_d[rows], nn[rows] = backend.nearest(rows)
    return torch.cat(merges).numpy()


def dense_distances_fit(num_classes: int, max_bytes: int) -> bool:
    return num_classes * num_classes * 4 <= max_bytes


def matrix_dtype(num_classes: int) -> torch.dtype:
    return torch.float64 if num_classes <= _FLOAT64_MAX_CLASSES else torch.float32


def cut_levels(merges: np.ndarray, num_classes: int, thresholds: np.ndarray) -> np.ndarray:
    """Partition of the classes at every threshold d_l.

    Two classes share a node at level l when their merge height (cophenetic
    distance) is below d_l; the linkages here have no inversions, so this is
    the union of all merges with height < d_l.

    Returns:
        (L + 1, C) int64 array: entry [l, c] is the id of class c's node at level l.
    """
    parent = np.arange(num_classes)

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    order = np.argsort(merges[:, 2], kind="stable")
    assignments = np.empty((len(thresholds), num_classes), dtype=np.int64)
    done = 0
    for level, threshold in enumerate(thresholds):
        while done < len(order) and merges[order[done], 2] < threshold:
            i, j = int(merges[order[done], 0]), int(merges[order[done], 1])
            ri, rj = find(i), find(j)
            parent[max(ri, rj)] = min(ri, rj)
            done += 1
        roots = parent.copy()
        while True:
            nxt = roots[roots]
            if np.array_equal(nxt, roots):
                break
            roots = nxt
        assignments[level] = roots
    return assignments
