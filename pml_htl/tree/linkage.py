"""Agglomerative clustering of classes and the cut of its dendrogram at d_l."""

from __future__ import annotations

import numpy as np

LINKAGES = ("average", "single", "complete")


def agglomerate(distances: np.ndarray, sizes: np.ndarray, linkage: str) -> np.ndarray:
    """Nearest-neighbour-chain clustering of C classes.

    Args:
        distances: (C, C) float64 class distances d(p, q).
        sizes: (C,) sample counts n_c; "average" linkage weights by them, so a
            node's distance is the average over all its cross sample pairs.
        linkage: "average", "single" or "complete".

    Returns:
        (C - 1, 3) float64 array of merges [i, j, height] in the order they were
        made; i and j are class indices standing for the two merged nodes. All
        three linkages are reducible, so the chain gives the exact dendrogram.
    """
    if linkage not in LINKAGES:
        raise ValueError(f"linkage must be one of {LINKAGES}, got {linkage!r}")
    C = distances.shape[0]
    D = np.array(distances, dtype=np.float64, copy=True)
    np.fill_diagonal(D, np.inf)
    size = np.asarray(sizes, dtype=np.float64).copy()
    active = np.ones(C, dtype=bool)
    merges = np.empty((max(C - 1, 0), 3), dtype=np.float64)
    chain: list = []
    next_start = 0
    for m in range(C - 1):
        while True:
            if not chain:
                while not active[next_start]:
                    next_start += 1
                chain.append(next_start)
            a = chain[-1]
            row = D[a]
            b = int(np.argmin(row))
            # Prefer the previous chain element on ties, or the chain can cycle.
            if len(chain) >= 2 and row[chain[-2]] <= row[b]:
                b = chain[-2]
                break
            chain.append(b)
        chain.pop()
        chain.pop()
        height = D[a, b]
        if linkage == "average":
            new = (size[a] * D[a] + size[b] * D[b]) / (size[a] + size[b])
        elif linkage == "single":
            new = np.minimum(D[a], D[b])
        else:
            new = np.maximum(D[a], D[b])
        keep, drop = min(a, b), max(a, b)
        D[keep, :] = new
        D[:, keep] = new
        D[drop, :] = np.inf
        D[:, drop] = np.inf
        D[keep, keep] = np.inf
        size[keep] += size[drop]
        active[drop] = False
        merges[m] = (keep, drop, height)
    return merges


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
