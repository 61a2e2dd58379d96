"""tree.png: a class tree as a dendrogram, the level thresholds d_l marked and
the leaves coloured by superclass. Above MAX_LEAVES classes: the top of the tree
(its last merges, each leaf a group of classes coloured by its commonest
superclass) and, below it, one whole subtree with every class named."""

from __future__ import annotations

import warnings
from collections import Counter
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from benchmarks.report.png import png_bytes

#: Trees up to this many classes are drawn whole.
MAX_LEAVES = 100
#: Groups at the top of a larger tree, and classes in its subtree.
TOP_GROUPS = 40
SUBTREE_LEAVES = 36


def _colours(superclasses: Optional[Sequence[str]]) -> Dict[str, Any]:
    import matplotlib

    if superclasses is None:
        return {}
    names = sorted(set(superclasses))
    palette = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: palette(i % palette.N) for i, name in enumerate(names)}


def _members(Z: np.ndarray, node: int, C: int) -> List[int]:
    """The leaves (class indices) under ``node`` of the linkage matrix."""
    stack, leaves = [node], []
    while stack:
        n = stack.pop()
        if n < C:
            leaves.append(n)
        else:
            row = Z[n - C]
            stack += [int(row[0]), int(row[1])]
    return leaves


def _subtree_root(Z: np.ndarray, C: int, size: int) -> int:
    """The largest node with at most ``size`` classes (the first such, by height)."""
    counts = Z[:, 3]
    fitting = np.flatnonzero(counts <= size)
    return C + int(fitting[np.argmax(counts[fitting])])


def _sub_linkage(Z: np.ndarray, C: int, root: int):
    """The linkage matrix of the subtree under ``root``, and its leaves' class indices."""
    leaves = sorted(_members(Z, root, C))
    index = {leaf: i for i, leaf in enumerate(leaves)}
    rows, nodes = [], {}
    n = len(leaves)
    for k, row in enumerate(Z):
        a, b = int(row[0]), int(row[1])
        if C + k > root:
            break
        ia = index.get(a) if a < C else nodes.get(a)
        ib = index.get(b) if b < C else nodes.get(b)
        if ia is None or ib is None:
            continue
        nodes[C + k] = n + len(rows)
        rows.append((min(ia, ib), max(ia, ib), row[2], row[3]))
    return np.array(rows, dtype=float), leaves


def _mark_levels(ax, thresholds: Sequence[float], top: float) -> None:
    """Dashed lines at the thresholds d_l within the drawn heights, labelled by l."""
    for level, height in enumerate(thresholds):
        if height > top * 1.05:
            break
        ax.axhline(height, color="grey", lw=0.6, ls="--", alpha=0.6, zorder=0)
        ax.annotate(f"d_{level}", (1.0, height), xycoords=("axes fraction", "data"),
                    xytext=(3, 0), textcoords="offset points", va="center", fontsize=7,
                    color="grey")  # fmt: skip


def _colour_leaves(ax, superclass_of: Dict[str, str], colours: Dict[str, Any]) -> None:
    """Each leaf's label in its superclass's colour."""
    for tick in ax.get_xmajorticklabels():
        colour = colours.get(superclass_of.get(tick.get_text()))
        if colour is not None:
            tick.set_color(colour)


def tree_png(record: Dict[str, Any], title: str) -> bytes:
    """The picture of one tree record (``evaluation.hierarchy.tree_record``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    from scipy.cluster.hierarchy import dendrogram as scipy_dendrogram

    def dendrogram(*args, **kwargs):
        with warnings.catch_warnings():  # a tree of one height (all classes at one point)
            warnings.filterwarnings("ignore", message="Attempting to set identical low and high")
            return scipy_dendrogram(*args, **kwargs)

    Z = np.asarray(record["linkage"], dtype=float)
    C = len(record["labels"])
    supers = record.get("superclasses")
    names = record.get("names") or [str(c) for c in record["labels"]]
    colours = _colours(supers)
    whole = C <= MAX_LEAVES
    fig, axes = plt.subplots(1 if whole else 2, 1, figsize=(13, 5 if whole else 9.5))
    axes = [axes] if whole else list(axes)
    grey = {"link_color_func": lambda k: "#555555"}

    if whole:
        dendrogram(Z, ax=axes[0], labels=names, leaf_font_size=8, **grey)
        leaf_super = {names[i]: supers[i] for i in range(C)} if supers else {}
        _colour_leaves(axes[0], leaf_super, colours)
        _mark_levels(axes[0], record["thresholds"], float(Z[:, 2].max()))
        axes[0].set_title(f"all {C} classes", fontsize=9)
    else:

        def group_label(node: int) -> str:
            return names[node] if node < C else f"({int(Z[node - C, 3])})"

        drawn = dendrogram(Z, ax=axes[0], truncate_mode="lastp", p=TOP_GROUPS,
                           leaf_label_func=group_label, leaf_font_size=8, **grey)  # fmt: skip
        for tick, leaf in zip(axes[0].get_xmajorticklabels(), drawn["leaves"]):
            members = _members(Z, leaf, C) if leaf >= C else [leaf]
            if supers:
                common = Counter(supers[i] for i in members).most_common(1)[0][0]
                tick.set_color(colours[common])
        _mark_levels(axes[0], record["thresholds"], float(Z[:, 2].max()))
        axes[0].set_title(
            f"the top of the tree: its last {TOP_GROUPS - 1} merges; a leaf (n) is a group "
            "of n classes, coloured by its commonest superclass, a named leaf one class",
            fontsize=9,
        )  # fmt: skip
        root = _subtree_root(Z, C, SUBTREE_LEAVES)
        sub, leaves = _sub_linkage(Z, C, root)
        sub_names = [names[i] for i in leaves]
        dendrogram(sub, ax=axes[1], labels=sub_names, leaf_font_size=10, **grey)
        leaf_super = {names[i]: supers[i] for i in leaves} if supers else {}
        _colour_leaves(axes[1], leaf_super, colours)
        _mark_levels(axes[1], record["thresholds"], float(sub[:, 2].max()))
        axes[1].set_title(
            f"one subtree, every class named: the largest group of at most {SUBTREE_LEAVES} "
            f"classes ({len(leaves)})", fontsize=9
        )  # fmt: skip
    for ax in axes:
        ax.set_ylabel("merge height (squared distance)")
    if colours:
        handles = [Patch(color=c, label=name) for name, c in colours.items()]
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 8),
                   fontsize=8, frameon=False, title="superclass")  # fmt: skip
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.07 if colours else 0, 0.97, 1))
    return png_bytes(fig)
