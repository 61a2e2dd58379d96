"""The learned class tree against a data set's known superclasses.

Two standard measures of how well a dendrogram over the classes agrees with a
flat labelling of them (glyph scripts, SOP's super_class_id, In-shop's garment
category):

- dendrogram purity (Heller & Ghahramani 2005): for every pair of classes with
  the same superclass, the fraction of the leaves under their lowest common
  node that have that superclass, averaged over those pairs;
- the adjusted Rand index of the tree cut into as many clusters as there are
  superclasses (its k - 1 highest merges undone).

The floor is the same measures on random trees of the same classes (a uniformly
random pair of clusters merged at every step), averaged over a few such trees
drawn with a fixed seed.

A dendrogram is ``HierarchicalClassTree.merges``: (C - 1, 3) rows [i, j,
height] over class indices 0..C-1 (positions in ``tree.labels``), in an order
in which they can be carried out (both nodes present when a row merges them),
node i standing for the union afterwards. Rows are not sorted by height.
"""

from __future__ import annotations

import time
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

#: Random trees averaged for the floor, and their seed (fixed: the same floor every run).
RANDOM_TREES = 5
RANDOM_SEED = 0


def _codes(superclasses: Sequence) -> np.ndarray:
    """Superclass names or ids as integer codes 0..S-1."""
    return np.unique(np.asarray(superclasses), return_inverse=True)[1].reshape(-1)


def _check_merges(merges: np.ndarray, num_classes: int) -> np.ndarray:
    merges = np.asarray(merges, dtype=np.float64)
    if merges.shape != (max(num_classes - 1, 0), 3):
        raise ValueError(
            f"merges must have shape ({num_classes - 1}, 3) for {num_classes} classes, "
            f"got {merges.shape}"
        )
    return merges


class _Roots:
    """Union-find over class indices: the cluster each class is in so far."""

    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        parent = self.parent
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    def join(self, i: int, j: int) -> tuple:
        """Merge the clusters of i and j (j's into i's); returns their two roots."""
        ri, rj = self.find(i), self.find(j)
        if ri == rj:
            raise ValueError(f"merges join classes {i} and {j} twice: not a dendrogram")
        self.parent[rj] = ri
        return ri, rj


def dendrogram_purity(merges: np.ndarray, superclasses: Sequence) -> float:
    """Dendrogram purity of ``merges`` over classes labelled ``superclasses`` (C,).

    The pairs whose lowest common node is a merge are exactly the pairs across
    its two children, so each merge adds, per superclass s, a_s b_s pairs of
    purity (a_s + b_s) / (|A| + |B|). NaN when no two classes share a superclass.
    """
    codes = _codes(superclasses)
    C = len(codes)
    merges = _check_merges(merges, C)
    counts = np.zeros((C, codes.max() + 1 if C else 0), dtype=np.int64)
    counts[np.arange(C), codes] = 1
    sizes = np.ones(C, dtype=np.int64)
    roots = _Roots(C)
    total = 0.0
    for i, j, _ in merges:
        ri, rj = roots.join(int(i), int(j))
        a, b = counts[ri], counts[rj]
        both = a + b
        n = sizes[ri] + sizes[rj]
        total += float((a * b * both).sum()) / n
        counts[ri], sizes[ri] = both, n
    per_superclass = np.bincount(codes)
    pairs = float((per_superclass * (per_superclass - 1) // 2).sum())
    return total / pairs if pairs else float("nan")


def bottom_up_order(merges: np.ndarray, num_classes: int) -> np.ndarray:
    """Row indices of ``merges`` from the lowest to the highest, never a merge before
    the merges below it: sorted by height made monotone up the tree (max of its own
    and its children's), ties in the rows' order."""
    merges = _check_merges(merges, num_classes)
    node_height = np.zeros(num_classes)
    effective = np.empty(len(merges))
    roots = _Roots(num_classes)
    for row, (i, j, height) in enumerate(merges):
        ri, rj = roots.join(int(i), int(j))
        effective[row] = node_height[ri] = max(height, node_height[ri], node_height[rj])
    return np.argsort(effective, kind="stable")


def cut_into_clusters(merges: np.ndarray, num_classes: int, k: int) -> np.ndarray:
    """(C,) cluster ids 0..k-1 of the classes: the tree with its k - 1 highest merges undone."""
    if not 1 <= k <= max(num_classes, 1):
        raise ValueError(f"k must be in [1, {num_classes}], got {k}")
    merges = _check_merges(merges, num_classes)
    roots = _Roots(num_classes)
    for row in bottom_up_order(merges, num_classes)[: num_classes - k]:
        roots.join(int(merges[row, 0]), int(merges[row, 1]))
    return _codes([roots.find(c) for c in range(num_classes)])


def adjusted_rand_index(merges: np.ndarray, superclasses: Sequence) -> float:
    """ARI between the superclasses and the tree cut into as many clusters as there are
    superclasses."""
    from sklearn.metrics import adjusted_rand_score

    codes = _codes(superclasses)
    clusters = cut_into_clusters(merges, len(codes), int(codes.max()) + 1)
    return float(adjusted_rand_score(codes, clusters))


def random_merges(num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """A random dendrogram: at every step two distinct clusters drawn uniformly merge
    (height = step)."""
    C = num_classes
    steps = np.arange(max(C - 1, 0))
    alive = C - steps
    a = (rng.random(len(steps)) * alive).astype(np.int64)
    b = (rng.random(len(steps)) * (alive - 1)).astype(np.int64)
    b += b >= a  # a second, different position
    live = list(range(C))
    merges = np.empty((len(steps), 3))
    for step in steps:
        i, j = live[a[step]], live[b[step]]
        merges[step] = (i, j, step + 1)
        live[b[step]] = live[alive[step] - 1]  # drop j: the last live node takes its place
    return merges


def random_floor(
    superclasses: Sequence, num_trees: int = RANDOM_TREES, seed: int = RANDOM_SEED
) -> Dict[str, float]:
    """Mean dendrogram purity and ARI of ``num_trees`` random trees of these classes."""
    rng = np.random.default_rng(seed)
    purity, ari = [], []
    for _ in range(num_trees):
        merges = random_merges(len(superclasses), rng)
        purity.append(dendrogram_purity(merges, superclasses))
        ari.append(adjusted_rand_index(merges, superclasses))
    return {"dendrogram_purity": float(np.mean(purity)), "adjusted_rand_index": float(np.mean(ari))}


def superclasses_of_tree_labels(
    tree_labels: Sequence[int],
    dataset_labels: Sequence[int],
    dataset_superclasses: Sequence,
    label_fn: Optional[Callable] = None,
) -> np.ndarray:
    """The superclass of each of the tree's classes.

    ``dataset_labels`` and ``dataset_superclasses`` (N,) give every training sample's
    class and superclass in the data set's label space; ``label_fn`` maps data set
    labels to the labels the tree holds (the trainer's remapping, e.g. PML's
    ``set_min_label_to_zero``). A class with two superclasses, or a tree class the
    data set lacks, raises.
    """
    labels = np.asarray(dataset_labels)
    supers = np.asarray(dataset_superclasses)
    if labels.shape != supers.shape:
        raise ValueError(
            f"{labels.shape[0]} labels but {supers.shape[0]} superclasses: one per sample"
        )
    classes, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    per_class = supers[first]
    mixed = supers != per_class[inverse.reshape(-1)]
    if mixed.any():
        c = labels[mixed][0]
        found = sorted({str(s) for s in supers[labels == c]})
        raise ValueError(f"class {c} has more than one superclass: {found}")
    mapped = classes if label_fn is None else np.asarray(label_fn(classes)).reshape(-1)
    lookup = dict(zip(mapped.tolist(), per_class.tolist()))
    tree_labels = np.asarray(tree_labels).tolist()
    missing = [c for c in tree_labels if c not in lookup]
    if missing:
        raise ValueError(f"tree classes {missing[:5]} have no superclass in the data set")
    return np.asarray([lookup[c] for c in tree_labels])


class HierarchyTracker:
    """Measures every rebuilt tree against the training classes' superclasses.

    ``entries`` holds one dict per tree: iteration, both measures, their random
    floor (computed once per class set) and the class and superclass counts.
    ``seconds``: time spent measuring.
    """

    def __init__(self, dataset_labels: Sequence[int], dataset_superclasses: Sequence):
        self.dataset_labels = np.asarray(dataset_labels)
        self.dataset_superclasses = np.asarray(dataset_superclasses)
        self.entries: List[Dict[str, float]] = []
        self.seconds = 0.0
        self._floors: Dict[tuple, Dict[str, float]] = {}

    def record(self, tree, iteration: int, label_fn: Optional[Callable] = None) -> Dict:
        start = time.perf_counter()
        supers = superclasses_of_tree_labels(
            tree.labels.cpu().numpy(), self.dataset_labels, self.dataset_superclasses, label_fn
        )
        merges = tree.merges.cpu().numpy()
        key = tuple(_codes(supers).tolist())
        if key not in self._floors:
            self._floors[key] = random_floor(supers)
        floor = self._floors[key]
        entry = {
            "iteration": int(iteration),
            "dendrogram_purity": dendrogram_purity(merges, supers),
            "adjusted_rand_index": adjusted_rand_index(merges, supers),
            "random_dendrogram_purity": floor["dendrogram_purity"],
            "random_adjusted_rand_index": floor["adjusted_rand_index"],
            "num_classes": len(supers),
            "num_superclasses": len(set(key)),
        }
        # undefined (no two classes share a superclass): null in the JSON, not NaN
        entry = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in entry.items()}
        self.entries.append(entry)
        self.seconds += time.perf_counter() - start
        return entry


def tree_record(
    tree,
    dataset_labels: Sequence[int],
    dataset_superclasses: Optional[Sequence] = None,
    superclass_names: Optional[Sequence[str]] = None,
    class_names: Optional[Dict[int, str]] = None,
    label_fn: Optional[Callable] = None,
) -> Dict:
    """A class tree as plain lists for a run's JSON, enough to draw it again:
    its labels, SciPy linkage matrix, thresholds d_l, and each class's
    superclass and name where the data set has them (in the data set's terms)."""
    labels = tree.labels.cpu().numpy()
    record = {
        "labels": labels.tolist(),
        "linkage": np.round(tree.linkage_matrix(), 6).tolist(),
        "thresholds": [round(float(t), 6) for t in tree.thresholds.cpu()],
        "level_start": int(tree.level_start),
        "superclasses": None,
        "names": None,
    }
    if dataset_superclasses is not None:
        supers = superclasses_of_tree_labels(labels, dataset_labels, dataset_superclasses, label_fn)
        named = superclass_names is not None
        record["superclasses"] = [
            str(superclass_names[int(s)]) if named else str(s) for s in supers
        ]
    if class_names is not None:
        own = np.unique(np.asarray(dataset_labels))
        mapped = own if label_fn is None else np.asarray(label_fn(own)).reshape(-1)
        back = {int(m): int(o) for m, o in zip(mapped, own)}
        record["names"] = [class_names.get(back.get(int(c), int(c)), str(c)) for c in labels]
    return record
