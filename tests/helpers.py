"""Data and brute-force references shared by several test files.

The references compute the formulas of docs/method.md with loops over samples
or sample pairs; the code under test is never used as its own reference.
"""

import numpy as np
import torch
from scipy.cluster.hierarchy import cophenet
from scipy.cluster.hierarchy import linkage as scipy_linkage
from scipy.spatial.distance import squareform


# --------------------------------------------------------------------- data
class BlobDataset(torch.utils.data.Dataset):
    """Gaussian blobs: a tiny, generated data set with `num_classes` classes."""

    def __init__(self, num_classes=12, per_class=10, dim=6, seed=0, label_offset=100):
        g = torch.Generator().manual_seed(seed)
        centers = torch.randn(num_classes, dim, generator=g) * 2
        self.data = centers.repeat_interleave(per_class, 0) + torch.randn(
            num_classes * per_class, dim, generator=g
        )
        self.labels = np.repeat(np.arange(num_classes) * 3 + label_offset, per_class)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.data[i], int(self.labels[i])


def hierarchical_data(sizes, labels=None, D=6, seed=0, noises=None, twins=()):
    """Samples of len(sizes) classes grouped under 3 "super classes".

    ``twins``: pairs of class positions that share the same centre (so they
    merge very low in the tree). Returns float64 (N, D) embeddings (not
    normalised) and (N,) int64 labels, samples of one class contiguous.
    """
    torch.manual_seed(seed)
    C = len(sizes)
    labels = list(range(C)) if labels is None else list(labels)
    supers = 1.5 * torch.randn(3, D, dtype=torch.float64)
    centres = supers[torch.arange(C) % 3] + 0.6 * torch.randn(C, D, dtype=torch.float64)
    for i, j in twins:
        centres[j] = centres[i]
    if noises is None:
        noises = (0.15 + 0.5 * torch.rand(C, dtype=torch.float64)).tolist()
    xs, ys = [], []
    for c, n in enumerate(sizes):
        xs.append(centres[c] + noises[c] * torch.randn(n, D, dtype=torch.float64))
        ys += [labels[c]] * n
    return torch.cat(xs), torch.tensor(ys, dtype=torch.long)


def unit_rows(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.sqrt((x**2).sum(1, keepdims=True))


def label_grid(tree_labels, device="cpu"):
    """(C, 1) and (1, C) label tensors: every class pair."""
    lab = torch.tensor(tree_labels, dtype=torch.long, device=device)
    return lab[:, None], lab[None, :]


def off_diagonal(m):
    m = np.asarray(m)
    return m[~np.eye(m.shape[0], dtype=bool)]


# ------------------------------------------------------- class statistics
def loop_statistics(batches, normalize=True):
    """{label: (n, S, Q)} of (x, y) batches, by looping over samples."""
    out = {}
    for x, y in batches:
        for xi, yi in zip(torch.as_tensor(x).double().numpy(), torch.as_tensor(y).tolist()):
            if normalize:
                xi = xi / max(np.sqrt((xi**2).sum()), 1e-12)
            n, S, Q = out.get(yi, (0, 0.0, 0.0))
            out[yi] = (n + 1, S + xi, Q + float((xi**2).sum()))
    return out


def assert_statistics_match(statistics, ref, rtol=1e-12):
    """A ClassStatistics holds exactly the classes of ``ref`` (loop_statistics)
    and their n, S and Q, accumulated in float64."""
    assert statistics.labels.tolist() == sorted(ref)
    for i, label in enumerate(statistics.labels.tolist()):
        n, S, Q = ref[label]
        assert statistics.counts[i].item() == n
        np.testing.assert_allclose(statistics.sums[i].numpy(), S, rtol=rtol, atol=rtol)
        np.testing.assert_allclose(statistics.squared_norms[i].item(), Q, rtol=rtol)
    assert statistics.sums.dtype == torch.float64


# ------------------------------------------------------------ class tree
def bf_sum_sq(a, b, skip_same_index=False):
    """(sum over pairs of ||a_i - b_j||^2, number of pairs), by a double loop."""
    total, count = 0.0, 0
    for i in range(len(a)):
        for j in range(len(b)):
            if skip_same_index and i == j:
                continue
            diff = a[i] - b[j]
            total += float(np.dot(diff, diff))
            count += 1
    return total, count


class RefTree:
    """s_c, d(p, q), d0 and d_l of docs/method.md from raw samples."""

    def __init__(self, x, y, num_levels, normalize=True):
        x = unit_rows(x) if normalize else np.asarray(x, dtype=np.float64)
        y = np.asarray(y)
        self.classes = sorted(set(y.tolist()))
        self.samples = [x[y == c] for c in self.classes]
        self.sizes = np.array([len(s) for s in self.samples])
        C = len(self.classes)
        spreads = np.full(C, np.nan)
        for c, s in enumerate(self.samples):
            if len(s) >= 2:
                total, count = bf_sum_sq(s, s, skip_same_index=True)
                assert count == len(s) ** 2 - len(s)
                spreads[c] = total / count
        multi = self.sizes >= 2
        self.d0 = float(spreads[multi].mean())
        spreads[~multi] = self.d0
        self.spreads = spreads
        self.L = num_levels
        self.thresholds = np.array(
            [lv * (4 - self.d0) / num_levels + self.d0 for lv in range(num_levels + 1)]
        )
        dist = np.zeros((C, C))
        for p in range(C):
            for q in range(C):
                if p != q:
                    total, count = bf_sum_sq(self.samples[p], self.samples[q])
                    dist[p, q] = total / count
        self.dist = dist

    def level(self, height):
        """H = min{l : height < d_l}, else L."""
        for lv, t in enumerate(self.thresholds):
            if height < t:
                return lv
        return self.L

    def levels_from_heights(self, heights):
        C = len(self.classes)
        H = np.zeros((C, C), dtype=np.int64)
        for p in range(C):
            for q in range(C):
                if p != q:
                    H[p, q] = self.level(heights[p, q])
        return H

    def scipy_levels(self, method):
        Z = scipy_linkage(squareform(self.dist, checks=False), method=method)
        coph = squareform(cophenet(Z))
        return self.levels_from_heights(coph), coph

    def naive_average_heights(self):
        """Greedy agglomeration: merge the two groups with the smallest average
        squared distance over all cross SAMPLE pairs, recomputed from the raw
        samples at every step; returns the merge height of every class pair."""
        C = len(self.classes)
        groups = [[c] for c in range(C)]
        heights = np.zeros((C, C))
        while len(groups) > 1:
            best = None
            for i in range(len(groups)):
                for j in range(i + 1, len(groups)):
                    A = np.concatenate([self.samples[c] for c in groups[i]])
                    B = np.concatenate([self.samples[c] for c in groups[j]])
                    d = float(((A[:, None, :] - B[None, :, :]) ** 2).sum(-1).mean())
                    if best is None or d < best[0]:
                        best = (d, i, j)
            d, i, j = best
            for p in groups[i]:
                for q in groups[j]:
                    heights[p, q] = heights[q, p] = d
            groups[i] = groups[i] + groups[j]
            del groups[j]
        return heights
