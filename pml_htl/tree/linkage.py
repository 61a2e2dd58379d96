"""Agglomerative clustering of classes and the cut of its dendrogram at d_l.

All three linkages are reducible: a pair of reciprocal nearest neighbours is
merged in the exact dendrogram, and merging it changes no other cluster's
nearest neighbour. So while many such pairs exist, every round merges all of
them at once and re-searches only the clusters whose neighbour was merged,
with whole-tensor operations (on any device). When rounds stall (one cluster
absorbing the others one at a time) or few nodes are left, the
nearest-neighbour chain finishes the tree on their float64 matrix in numpy.

Two backends (``LinkageBackend``) give the distances to the rounds:
- ``DenseBackend``: the (C, C) class-distance matrix, updated by
  Lance-Williams (average weighted by sample counts, single, complete).
- ``NeighborListBackend`` (average linkage only): no matrix at all, a list of
  candidate neighbours per node with lower bounds on their distances, and
  exact distances from the nodes' statistics only where a bound decides.
  Memory O(C (D + k)); used above a few thousand classes, where it is also
  faster than the matrix.

``lance_williams`` is the one update d(A u B, X) behind the matrix's rows, the
chain's rows and the lists' bounds.
"""

from __future__ import annotations

from typing import Optional, Protocol, Tuple, TypeVar, Union, runtime_checkable

import numpy as np
import torch

LINKAGES = ("average", "single", "complete")

#: Class counts up to which the dense backend keeps its matrix in float64.
_FLOAT64_MAX_CLASSES = 4096
_BLOCK_ELEMENTS = 1 << 24
#: Exact distances tried per node (1 + 2 + ... + 16) before searching all nodes again.
_LAZY_WIDTH = 16
#: The nearest-neighbour chain finishes the tree once this few nodes remain
#: (a float64 matrix of them: 128 MB), or at once below _NN_CHAIN_ALWAYS.
_NN_CHAIN_MAX_NODES = 4096
_NN_CHAIN_ALWAYS = 1024


def centered_moments(
    means: torch.Tensor, mean_squared_norms: torch.Tensor, center: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor]:
    """(mu - c, Q/n - 2 mu . c + |c|^2): the same distances d(p, q) as (mu, Q/n),
    with far less cancellation in float32 when the embeddings sit far from
    the origin and c is their mean."""
    return means - center, mean_squared_norms - 2 * means @ center + center @ center


def distance_block(
    means_r: torch.Tensor,
    mean_squared_norms_r: torch.Tensor,
    means_c: torch.Tensor,
    mean_squared_norms_c: torch.Tensor,
) -> torch.Tensor:
    """d(p, q) = Q_p/n_p + Q_q/n_q - 2 mu_p . mu_q for every row class p and
    column class q, clamped at 0 (rounding can dip below)."""
    d = mean_squared_norms_r[:, None] + mean_squared_norms_c[None, :] - 2 * means_r @ means_c.T
    return d.clamp_(min=0)


def _block_rows(num_cols: int) -> int:
    return max(1, _BLOCK_ELEMENTS // max(num_cols, 1))


Distances = TypeVar("Distances", torch.Tensor, np.ndarray)


def lance_williams(
    linkage: str,
    d_a: Distances,
    d_b: Distances,
    n_a: Union[torch.Tensor, np.ndarray, float],
    n_b: Union[torch.Tensor, np.ndarray, float],
) -> Distances:
    """d(A u B, X) from d_a = d(A, X) and d_b = d(B, X) (Lance-Williams).

    single: min(d_a, d_b); complete: max(d_a, d_b); average:
    (n_A d_a + n_B d_b) / (n_A + n_B), the mean over sample pairs, with n_A,
    n_B the sample counts (or weights proportional to them) broadcast against
    the distances. Tensors stay tensors on their device, arrays stay numpy.
    """
    is_tensor = torch.is_tensor(d_a)
    if linkage == "single":
        return torch.minimum(d_a, d_b) if is_tensor else np.minimum(d_a, d_b)
    if linkage == "complete":
        return torch.maximum(d_a, d_b) if is_tensor else np.maximum(d_a, d_b)
    # counts in the distances' dtype: float64 counts would promote float32 distances
    if is_tensor:
        n_a = torch.as_tensor(n_a, dtype=d_a.dtype, device=d_a.device)
        n_b = torch.as_tensor(n_b, dtype=d_a.dtype, device=d_a.device)
    else:
        n_a, n_b = np.asarray(n_a, dtype=d_a.dtype), np.asarray(n_b, dtype=d_a.dtype)
    return (n_a * d_a + n_b * d_b) / (n_a + n_b)


@runtime_checkable
class LinkageBackend(Protocol):
    """The node distances that ``agglomerate`` merges by.

    A node is named by a class index in [0, C): each class starts as a node,
    and ``merge(a, b)`` makes node a stand for A u B and retires b. Index
    tensors are int64 on the backend's device and name live nodes.
    """

    #: "average", "single" or "complete": how a merged node's distances follow
    #: from its parts' (``lance_williams``).
    linkage: str

    def nearest(self, rows: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Each row's nearest other live node, for (R,) node indices ``rows``.

        Returns their (R,) distances, float64 but only as precise as the
        backend's search, and their (R,) int64 node indices.
        """
        ...

    def height(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(P,) float64 d(a_i, b_i) for (P,) node indices a and b: merge heights."""
        ...

    def merge(self, a: torch.Tensor, b: torch.Tensor) -> None:
        """Merge node b_i into node a_i for (P,) node indices a, b (2P distinct).

        Afterwards a_i stands for A_i u B_i, with distances by ``linkage``,
        and b_i is no longer a live node.
        """
        ...

    def live_matrix(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Hand the R live nodes over to the nearest-neighbour chain.

        Returns their (R,) int64 node indices, their (R, R) float64 distance
        matrix (the caller's to overwrite; the diagonal is not meaningful) and
        their (R,) float64 sample counts. The backend is done afterwards.
        """
        ...


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

    def merge(self, a: torch.Tensor, b: torch.Tensor) -> None:
        D, size = self.D, self.size
        a, b = self.pos[a], self.pos[b]
        # The matrix stays symmetric, so a merged node's column is its row.
        new = lance_williams(
            self.linkage, D.index_select(0, a), D.index_select(0, b), size[a, None], size[b, None]
        )
        # distances between two nodes merged in this same round: combine again
        new[:, a] = lance_williams(self.linkage, new[:, a], new[:, b], size[None, a], size[None, b])
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

    def live_matrix(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(class index, float64 distance matrix, size) of the nodes not merged
        away; hands the matrix over (this backend is done afterwards)."""
        if self.num_gone:
            self._compact()
        D = self.D.double().cpu().numpy()
        return self.ids.cpu().numpy(), D, self.size.cpu().numpy().copy()


class NeighborListBackend:
    """Average linkage from sufficient statistics, with a candidate list per node.

    No distance matrix: a node is its statistics (n, S, Q), and its distance
    to another node is Q_A/n_A + Q_B/n_B - 2 mu_A . mu_B. Each node keeps the
    ids of k candidate neighbours with a lower bound on each one's distance,
    plus ``bound``, a lower bound on its distance to every node not listed.

    Average linkage only lets distances grow by merging (d(A u B, X) is the
    n-weighted mean of d(A, X) and d(B, X)), so a stored distance stays a
    lower bound (capped at ``bound``) after the nodes around it merge. A
    nearest-neighbour query takes the smallest listed bound, computes the
    exact distance only for that entry and repeats until the smallest entry
    is exact; the whole node set is searched again only when the list runs
    out (its smallest bound exceeds ``bound``). A merged node's list is the
    union of its parts' lists with Lance-Williams-combined bounds, so merging
    needs no distance at all. Memory is O(C (D + k)).

    Args:
        counts, sums, squared_norms: n_c, S_c, Q_c of every class.
        width: k, the candidates listed per node (at most C - 1); the first
            search fills every list with the node's k nearest classes.
        dtype: precision of the search; merge heights are always float64.
    """

    linkage = "average"

    def __init__(
        self,
        counts: torch.Tensor,
        sums: torch.Tensor,
        squared_norms: torch.Tensor,
        width: int,
        dtype: torch.dtype = torch.float64,
    ):
        device = counts.device
        self.n = counts.double().clone()
        self.S = sums.double().clone()
        self.Q = squared_norms.double().clone()
        self.dtype = dtype
        # The search runs on means moved by the mean of all samples: distances
        # do not change, and float32 keeps its precision far from the origin.
        self.center = self.S.sum(0) / self.n.sum()
        self.mu = torch.empty(self.S.shape, dtype=dtype, device=device)
        self.q = torch.empty(self.n.shape, dtype=dtype, device=device)
        self.rep = torch.arange(self.n.shape[0], device=device)  # node id -> live node
        step = _block_rows(self.S.shape[1])  # no float64 copy of all of S at once
        for start in range(0, self.S.shape[0], step):
            self._refresh(self.rep[start : start + step])
        self.active = torch.ones_like(self.n, dtype=torch.bool)
        self.width = min(width, self.n.shape[0] - 1)
        shape = (self.n.shape[0], self.width)
        self.lists = torch.empty(shape, dtype=torch.long, device=device)
        self.lower = torch.empty(shape, dtype=dtype, device=device)
        self.bound = torch.empty(self.n.shape, dtype=dtype, device=device)
        self.round = 0
        # an entry is exact while its stamp is not older than its node's last merge
        self.stamp = torch.empty(shape, dtype=torch.long, device=device)
        self.changed_at = torch.zeros(self.n.shape, dtype=torch.long, device=device)
        self.searched_rows = 0  # rows searched in full, for diagnostics
        self._search(self.rep)

    def neighbors(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Each node's listed neighbours, nearest first, and their distances."""
        return self.lists.clone(), self.lower.clone()

    def _refresh(self, rows: torch.Tensor) -> None:
        """The search copies of ``rows``' moments, moved to the center."""
        mu, q = centered_moments(
            self.S[rows] / self.n[rows, None], self.Q[rows] / self.n[rows], self.center
        )
        self.mu[rows], self.q[rows] = mu.to(self.dtype), q.to(self.dtype)

    def _exact(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        mu_a, mu_b = self.S[a] / self.n[a, None], self.S[b] / self.n[b, None]
        return (self.Q[a] / self.n[a] + self.Q[b] / self.n[b] - 2 * (mu_a * mu_b).sum(1)).clamp(
            min=0
        )

    def _search_distances(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        out = torch.empty(a.shape, dtype=self.dtype, device=a.device)
        step = _block_rows(self.mu.shape[1])
        for start in range(0, a.shape[0], step):
            i, j = a[start : start + step], b[start : start + step]
            out[start : start + step] = self.q[i] + self.q[j] - 2 * (self.mu[i] * self.mu[j]).sum(1)
        return out

    def _search(self, rows: torch.Tensor) -> None:
        """Refill the lists of ``rows`` with their nearest live nodes."""
        self.searched_rows += rows.shape[0]
        cols = torch.nonzero(self.active).squeeze(1)
        listed = min(self.width, cols.shape[0] - 1)
        found = min(listed + 1, cols.shape[0] - 1)
        mu_c, q_c = self.mu[cols], self.q[cols]
        step = _block_rows(cols.shape[0])
        for start in range(0, rows.shape[0], step):
            r = rows[start : start + step]
            # q_c - 2 mu_r . mu_c ranks a row as d(r, c) does; q_r is added to the winners
            d = torch.addmm(q_c[None, :], self.mu[r], mu_c.T, alpha=-2)
            # each row's own column (rows are live, cols sorted): O(rows), no mask
            d[torch.arange(r.shape[0], device=r.device), torch.searchsorted(cols, r)] = float("inf")
            value, index = torch.topk(d, found, dim=1, largest=False)
            value += self.q[r, None]
            ids, lower = cols[index[:, :listed]], value[:, :listed]
            if found > listed:
                self.bound[r] = value[:, listed]
            else:  # every live node is listed
                self.bound[r] = float("inf")
            if listed < self.width:  # pad with the node itself, which is never taken
                pad = self.width - listed
                ids = torch.cat([ids, r[:, None].expand(-1, pad)], 1)
                lower = torch.cat([lower, value.new_full((r.shape[0], pad), float("inf"))], 1)
            self.lists[r], self.lower[r] = ids, lower
            self.stamp[r] = self.round

    def nearest(self, rows: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        ids = self.rep[self.lists[rows]]
        low = self.lower[rows].masked_fill(ids == rows[:, None], float("inf"))
        stamp = self.stamp[rows]
        bound = self.bound[rows]
        open_rows = torch.arange(rows.shape[0], device=rows.device)
        # Exact distances for the 1, 2, 4, ... smallest entries of the rows whose
        # smallest entry is still only a bound: most rows settle in one pass.
        width = 1
        while True:
            value, entry = low[open_rows].min(1)
            node = ids[open_rows].gather(1, entry[:, None])[:, 0]
            exact = stamp[open_rows].gather(1, entry[:, None])[:, 0] >= self.changed_at[node]
            open_rows = open_rows[~exact & (value <= bound[open_rows]) & (value < float("inf"))]
            if not open_rows.numel():
                break
            # the smallest entries that are only bounds (an exact one needs no work;
            # with ties, plain topk could pick only exact ones and make no progress)
            bounds_only = stamp[open_rows] < self.changed_at[ids[open_rows]]
            candidates = low[open_rows].masked_fill(~bounds_only, float("inf"))
            value, entry = torch.topk(candidates, min(width, self.width), dim=1, largest=False)
            r = open_rows[:, None].expand_as(entry)
            stale = value < float("inf")
            r, entry = r[stale], entry[stale]
            low[r, entry] = self._search_distances(rows[r], ids[r, entry])
            stamp[r, entry] = self.round
            width *= 2
            if width > _LAZY_WIDTH:
                # a search costs about as much as a few hundred single distances
                break
        value, entry = low.min(1)
        self.lists[rows], self.lower[rows], self.stamp[rows] = ids, low, stamp
        idx = ids.gather(1, entry[:, None])[:, 0]
        exhausted = (value > bound) | (value == float("inf"))
        exhausted[open_rows] = True
        if bool(exhausted.any()):
            r = rows[exhausted]
            self._search(r)
            value[exhausted], idx[exhausted] = self.lower[r, 0], self.lists[r, 0]
        return value.double(), idx

    def height(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self._exact(a, b)

    def merge(self, a: torch.Tensor, b: torch.Tensor) -> None:
        self.round += 1
        self.rep[b] = a
        self.rep = self.rep[self.rep]
        step = _block_rows(self.width * self.width)
        for start in range(0, a.shape[0], step):
            self._merge_lists(a[start : start + step], b[start : start + step])
        self.n[a] += self.n[b]
        self.S[a] += self.S[b]
        self.Q[a] += self.Q[b]
        self._refresh(a)
        self.active[b] = False
        self.changed_at[a] = self.round

    def live_matrix(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(class index, float64 distance matrix, size) of the nodes not merged away."""
        live = torch.nonzero(self.active).squeeze(1)
        mu = self.S[live] / self.n[live, None]
        q = self.Q[live] / self.n[live]
        D = distance_block(mu, q, mu, q)
        return live.cpu().numpy(), D.cpu().numpy(), self.n[live].cpu().numpy()

    def _merge_lists(self, a: torch.Tensor, b: torch.Tensor) -> None:
        """The candidate list of A u B from the lists of A and B; no distance computed."""
        ids_a, ids_b = self.rep[self.lists[a]], self.rep[self.lists[b]]
        bound_a, bound_b = self.bound[a, None], self.bound[b, None]
        low_a = torch.minimum(self.lower[a], bound_a)
        low_b = torch.minimum(self.lower[b], bound_b)
        same = ids_a[:, :, None] == ids_b[:, None, :]
        inf = torch.tensor(float("inf"), dtype=self.dtype, device=a.device)
        # a node missing from one list is at least that list's bound away
        low_b_for_a = torch.where(same, low_b[:, None, :], inf).amin(2).minimum(bound_b)
        low_a_for_b = torch.where(same, low_a[:, :, None], inf).amin(1).minimum(bound_a)
        n_a, n_b = self.n[a, None], self.n[b, None]
        # Weights w = n / (n_A + n_B) rounded once from float64 sum to exactly 1
        # in the search dtype, so the mean is w_A d_a + w_B d_b to the bit; counts
        # would round differently in float32 and could break exact ties otherwise.
        w_a, w_b = (n_a / (n_a + n_b)).to(self.dtype), (n_b / (n_a + n_b)).to(self.dtype)

        def combined(d_a: torch.Tensor, d_b: torch.Tensor) -> torch.Tensor:
            return lance_williams(self.linkage, d_a, d_b, w_a, w_b)

        from_a = combined(low_a, low_b_for_a)
        from_b = combined(low_a_for_b, low_b).masked_fill(same.any(1), float("inf"))
        ids = torch.cat([ids_a, ids_b], 1)
        low = torch.cat([from_a, from_b], 1).masked_fill(ids == a[:, None], float("inf"))
        value, order = torch.topk(low, self.width + 1, dim=1, largest=False)
        self.lists[a] = ids.gather(1, order[:, : self.width])
        self.lower[a] = value[:, : self.width]
        self.stamp[a] = -1  # combined bounds, not exact distances
        self.bound[a] = torch.minimum(combined(bound_a, bound_b), value[:, self.width, None])[:, 0]


def agglomerate(
    backend: LinkageBackend,
    num_classes: int,
    device: Optional[Union[str, torch.device]] = None,
    initial: Optional[torch.Tensor] = None,
) -> np.ndarray:
    """Merge rounds of reciprocal nearest neighbours while they merge many pairs
    at once, then the nearest-neighbour chain on the remaining nodes.

    Args:
        backend: the distances of the C classes; merged to the end, so not
            reusable afterwards.
        num_classes: C.
        device: where ``backend``'s index tensors live.
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
    active = torch.ones(C, dtype=torch.bool, device=device)
    nn = nn_d = None
    remaining, merged = C, C
    while remaining > 1:
        if remaining <= _NN_CHAIN_MAX_NODES and (
            remaining <= _NN_CHAIN_ALWAYS or merged < remaining // 64
        ):
            # few pairs per round: one Python step per merge is cheaper than a round
            ids, distances, sizes = backend.live_matrix()
            tail = nn_chain(distances, sizes, backend.linkage)
            tail[:, :2] = ids[tail[:, :2].astype(np.int64)]
            merges.append(torch.from_numpy(tail))
            break
        if nn is None:
            all_rows = torch.arange(C, device=device)
            if initial is None:
                nn_d, nn = backend.nearest(all_rows)
            else:
                nn = initial.to(device).clone()
                nn_d = backend.height(all_rows, nn)
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
        merged = int(a.numel())
        remaining -= merged
        if remaining <= 1:
            break
        is_merged = torch.zeros(C, dtype=torch.bool, device=device)
        is_merged[a] = True
        is_merged[b] = True
        stale = active & is_merged[nn]
        stale[a] = True
        rows = torch.nonzero(stale).squeeze(1)
        nn_d[rows], nn[rows] = backend.nearest(rows)
    return torch.cat(merges).numpy()


def nn_chain(distances: np.ndarray, sizes: np.ndarray, linkage: str) -> np.ndarray:
    """The nearest-neighbour chain algorithm with Lance-Williams updates.

    Args:
        distances: (R, R) float64 node distances; overwritten.
        sizes: (R,) sample counts, the weights of average linkage.

    Returns:
        (R - 1, 3) merges [i, j, height] in matrix positions (i < j keeps its row).
    """
    R = distances.shape[0]
    D, sizes = distances, sizes.astype(np.float64)
    np.fill_diagonal(D, np.inf)
    merges = np.empty((max(R - 1, 0), 3))
    active = np.ones(R, dtype=bool)
    chain: list = []
    done, start = 0, 0
    while done < R - 1:
        if not chain:
            while not active[start]:
                start += 1
            chain.append(start)
        x = chain[-1]
        row = D[x]
        y = int(row.argmin())
        # ties go to the previous chain element, so the chain cannot cycle
        if len(chain) > 1 and row[chain[-2]] <= row[y]:
            y = chain[-2]
        if len(chain) == 1 or y != chain[-2]:
            chain.append(y)
            continue
        chain.pop()
        chain.pop()
        a, b = min(x, y), max(x, y)
        merges[done] = (a, b, D[a, b])
        done += 1
        new = lance_williams(linkage, D[a], D[b], sizes[a], sizes[b])
        new[a] = new[b] = np.inf
        D[a], D[:, a] = new, new
        D[b], D[:, b] = np.inf, np.inf
        sizes[a] += sizes[b]
        active[b] = False
    return merges


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
