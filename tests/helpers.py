"""Data and brute-force references shared by several test files.

The references compute the formulas of docs/method.md with loops over samples
or sample pairs; the code under test is never used as its own reference.
"""

import ast

import numpy as np
import torch
from scipy.cluster.hierarchy import cophenet
from scipy.cluster.hierarchy import linkage as scipy_linkage
from scipy.spatial.distance import squareform

from pml_htl import HierarchicalClassTree


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


# ------------------------------------------- triplets: data and naive loops
CLASSES = [3, 11, 20, 42, 57, 64]
D = 8


def class_centres(seed=100, dim=D):
    g = torch.Generator().manual_seed(seed)
    supers = 1.5 * torch.randn(3, dim, generator=g, dtype=torch.float64)
    idx = torch.arange(len(CLASSES)) % 3
    return supers[idx] + 0.6 * torch.randn(len(CLASSES), dim, generator=g, dtype=torch.float64)


def sample(labels, noise=0.9, seed=0, dim=D, dtype=torch.float64):
    """Embeddings near each label's class centre (float64 unless told)."""
    torch.manual_seed(seed)
    centres = class_centres(dim=dim)
    rows = torch.tensor([CLASSES.index(int(c)) if int(c) in CLASSES else 0 for c in labels])
    x = centres[rows] + noise * torch.randn(len(labels), dim, dtype=torch.float64)
    return x.to(dtype)


def training_tree(num_levels=16, seed=1):
    labels = torch.tensor(CLASSES).repeat_interleave(torch.tensor([5, 3, 1, 4, 6, 2]))
    x = sample(labels, noise=0.5, seed=seed)
    return HierarchicalClassTree.from_embeddings(x, labels, num_levels=num_levels)


BATCHES = {
    "balanced": [3, 3, 3, 3, 11, 11, 11, 11, 20, 20, 20, 20, 57, 57, 57, 57],
    # unequal class sizes, and class 64 has a single sample (no positive)
    "unequal": [42, 3, 42, 11, 42, 3, 64, 11, 42, 3, 57, 57, 11, 42, 20, 20],
}


def make_labels(name):
    return torch.tensor(BATCHES[name], dtype=torch.long)


def unit(x):
    return x / torch.sqrt((x * x).sum(1, keepdim=True))


def naive_triplets(labels, ref_labels=None):
    """All (a, p, n) by a triple loop. Without ref_labels, p != a."""
    same_set = ref_labels is None
    L = labels.tolist()
    R = L if same_set else ref_labels.tolist()
    out = []
    for a in range(len(L)):
        for p in range(len(R)):
            if R[p] != L[a] or (same_set and p == a):
                continue
            for n in range(len(R)):
                if R[n] != L[a]:
                    out.append((a, p, n))
    return out


def formula_alpha(tree, beta, ya, yn, known=None, scale=1.0):
    """alpha = beta + lambda (d_H(y_a, y_n) - s_{y_a}) with lambda = ``scale``; beta
    without a tree or for classes the tree does not know (drop-in mode)."""
    if tree is None:
        return torch.full((len(ya),), float(beta), dtype=torch.float64)
    if known is None:
        return beta + scale * (tree.merge_distance(ya, yn) - tree.spread(ya))
    alpha = torch.full((len(ya),), float(beta), dtype=torch.float64)
    for i, (p, q) in enumerate(zip(ya.tolist(), yn.tolist())):
        if p in known and q in known:
            pa, qa = torch.tensor([p]), torch.tensor([q])
            alpha[i] = beta + scale * (tree.merge_distance(pa, qa)[0] - tree.spread(pa)[0])
    return alpha


def naive_per_triplet(
    emb,
    labels,
    triplets,
    tree,
    beta,
    kind="sq",
    ref_emb=None,
    ref_labels=None,
    known=None,
    scale=1.0,
):
    """0.5 * hinge of each triplet."""
    x = unit(emb)
    r = x if ref_emb is None else unit(ref_emb)
    ref_labels = labels if ref_labels is None else ref_labels
    a = torch.tensor([t[0] for t in triplets], dtype=torch.long)
    p = torch.tensor([t[1] for t in triplets], dtype=torch.long)
    n = torch.tensor([t[2] for t in triplets], dtype=torch.long)
    alpha = formula_alpha(tree, beta, labels[a], ref_labels[n], known, scale).to(x.dtype)
    xa, xp, xn = x[a], r[p], r[n]
    if kind == "sq":
        v = ((xa - xp) ** 2).sum(1) - ((xa - xn) ** 2).sum(1) + alpha
    elif kind == "plain":
        v = torch.sqrt(((xa - xp) ** 2).sum(1)) - torch.sqrt(((xa - xn) ** 2).sum(1)) + alpha
    elif kind == "cos":
        v = (xa * xn).sum(1) - (xa * xp).sum(1) + alpha / 2
    else:
        raise AssertionError(kind)
    return 0.5 * torch.clamp(v, min=0)


def naive_mean(*args, **kwargs):
    per = naive_per_triplet(*args, **kwargs)
    return per.sum() / len(per)


def miner_tree(num_classes=6, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_classes).repeat_interleave(7)
    emb = torch.randn(num_classes, dim, generator=g).repeat_interleave(7, 0)
    emb = emb + 0.8 * torch.randn(emb.shape, generator=g)
    return HierarchicalClassTree.from_embeddings(emb, labels)


def naive_violating(emb, labels, ref, ref_labels, tree, beta, kind, same_set, scale=1.0):
    x = torch.nn.functional.normalize(emb.double(), dim=1)
    r = torch.nn.functional.normalize(ref.double(), dim=1)
    found = set()
    for a in range(len(x)):
        for p in range(len(r)):
            if labels[a] != ref_labels[p] or (same_set and a == p):
                continue
            for n in range(len(r)):
                if ref_labels[n] == labels[a]:
                    continue
                ya, yn = labels[a : a + 1], ref_labels[n : n + 1]
                alpha = float(beta + scale * (tree.merge_distance(ya, yn) - tree.spread(ya)))
                if kind == "cos":
                    v = float(x[a] @ r[n] - x[a] @ r[p]) + alpha / 2
                else:
                    dap = float(((x[a] - r[p]) ** 2).sum())
                    dan = float(((x[a] - r[n]) ** 2).sum())
                    if kind == "plain":
                        dap, dan = dap**0.5, dan**0.5
                    v = dap - dan + alpha
                if v > 0:
                    found.add((a, p, n))
    return found


def write_folder_dataset(root, num_classes, per_class, seed=0):
    """``num_classes`` folders ``class_NN`` of ``per_class`` noisy 16 x 16 RGB PNGs
    (a 4 x 4 colour pattern per class): the ``folder`` data set's layout."""
    import os

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in range(num_classes):
        os.makedirs(root / f"class_{c:02d}")
        base = rng.integers(0, 255, (4, 4, 3))
        for i in range(per_class):
            img = np.kron(base, np.ones((4, 4, 1))) + rng.normal(0, 20, (16, 16, 3))
            Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(
                root / f"class_{c:02d}" / f"{i}.png"
            )
    return str(root)


# ------------------------------------------------------------ source layout
def imports_of(path, root):
    """[(imported module, names taken from it)] of the source file ``path`` (a
    pathlib.Path below ``root``, the folder that holds its top package), with
    relative imports resolved; every import statement, function-local ones too."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = parts if is_package else parts[:-1]
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            found.append((stem, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
    return found
