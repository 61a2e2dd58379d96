"""The hierarchical class tree of HTL: spreads s_c, thresholds d_l, merge levels H
and margins alpha (docs/method.md, "The class tree")."""

from __future__ import annotations

import time
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
import torch

from .. import _sync
from .._validation import (
    check_beta,
    check_labels,
    check_margin_scale,
    check_positive_int,
    require,
)
from .class_statistics import ClassStatistics
from .linkage import (
    LINKAGES,
    DenseBackend,
    NeighborListBackend,
    agglomerate,
    centered_moments,
    cut_levels,
    dense_distances_fit,
    distance_block,
    matrix_dtype,
)

#: Largest squared distance between L2-normalised embeddings; d_L equals it.
MAX_SQUARED_DISTANCE = 4.0

_ROW_BLOCK = 1024
#: Largest level comparison ((L + 1) x anchors x references) of one margin block.
_PAIR_BLOCK = 1 << 24
#: Largest class-distance matrix kept in memory (single and complete linkage).
DENSE_MAX_BYTES = 1 << 30
#: Average linkage uses a float64 distance matrix up to this many classes and
#: neighbour lists without a matrix above (faster there, and O(C (D + k)) memory).
AVERAGE_DENSE_MAX_CLASSES = 4096


#: The tree options (L, the linkage and the level counting) and their defaults.
DEFAULT_TREE_OPTIONS: Dict[str, Any] = {"num_levels": 16, "linkage": "average", "level_start": 0}


def check_tree_options(num_levels: int, linkage: str, level_start: int) -> None:
    """The tree's options, checked wherever they are taken (tree, loss, hook)."""
    check_positive_int(num_levels, "num_levels")
    if linkage not in LINKAGES:
        raise ValueError(f"linkage must be one of {LINKAGES}, got {linkage!r}")
    if level_start not in (0, 1):
        raise ValueError(f"level_start must be 0 or 1, got {level_start!r}")


def resolve_tree_options(
    options: Dict[str, Any], tree: Optional["HierarchicalClassTree"] = None, what: str = "tree"
) -> Dict[str, Any]:
    """The options given (``None`` = not given), the others from ``tree`` when
    there is one, else the defaults; checked. A given option that differs from
    ``tree``'s raises, naming the option."""
    resolved = {}
    for name, default in DEFAULT_TREE_OPTIONS.items():
        value = options.get(name)
        if tree is not None:
            if value is not None and value != getattr(tree, name):
                raise ValueError(
                    f"{name}={value!r} was given, but {what} was built with "
                    f"{name}={getattr(tree, name)!r}: give the same {name} or leave it out"
                )
            value = getattr(tree, name)
        resolved[name] = default if value is None else value
    check_tree_options(**resolved)
    resolved["num_levels"] = int(resolved["num_levels"])
    resolved["level_start"] = int(resolved["level_start"])
    return resolved


def check_tree_matches(options: Dict[str, Any], tree: "HierarchicalClassTree", what: str) -> None:
    """Raise, naming the option, when ``tree`` was built with other tree options."""
    for name, value in options.items():
        if getattr(tree, name) != value:
            raise ValueError(
                f"{what} was built with {name}={getattr(tree, name)!r}, but this object "
                f"uses {name}={value!r}: build both with the same {name}"
            )


class HierarchicalClassTree:
    """Classes merged level by level at the thresholds d_0 < ... < d_L.

    Built from `ClassStatistics` (``n_c``, ``S_c``, ``Q_c``) on their
    device: class distances, the merge rounds, nearest-class search and every
    lookup run there. Up to 4,096 classes the merges run on a float64
    class-distance matrix; above, average linkage keeps no matrix (neighbour
    lists searched in float32, merge heights in float64), and single or
    complete linkage a float32 matrix of at most 1 GiB.

    Args:
        statistics: per-class statistics of the training set's embeddings.
        num_levels: L, the number of levels above the leaves (default 16).
        linkage: "average" (default: sample-weighted, the same average over
            sample pairs as d(p, q)), "single" or "complete".
        level_start: 0 (default) counts levels from 0, so classes merged below
            d_0 get H = 0; 1 counts them from 1, so no pair of distinct classes
            gets d_0.
        num_neighbors: how many nearest classes per class to cache for the
            anchor-neighbour sampler (more are computed on demand).

    Classes with a single sample have no spread s_c: they are left out of d0
    and get s_c = d0.

    Example:
        >>> import torch
        >>> from pml_htl import ClassStatistics, HierarchicalClassTree
        >>> labels = torch.arange(6).repeat_interleave(10)  # int64 class labels
        >>> embeddings = torch.randn(60, 8)  # (N, D), L2-normalised by the statistics
        >>> tree = HierarchicalClassTree(ClassStatistics.from_embeddings(embeddings, labels))
        >>> tree.num_classes, tree.num_levels
        (6, 16)
        >>> a = torch.tensor([0, 1])
        >>> tree.margin(a[:, None], a[None, :], beta=0.1).shape  # alpha for each class pair
        torch.Size([2, 2])
    """

    def __init__(
        self,
        statistics: ClassStatistics,
        num_levels: int = 16,
        linkage: str = "average",
        level_start: int = 0,
        num_neighbors: int = 64,
    ):
        if not isinstance(statistics, ClassStatistics):
            raise TypeError(
                f"statistics must be a ClassStatistics, got {type(statistics).__name__}"
            )
        start = time.perf_counter()
        check_tree_options(num_levels, linkage, level_start)
        self.num_levels = int(num_levels)
        check_positive_int(num_neighbors, "num_neighbors")
        if statistics.num_classes < 2:
            raise ValueError(
                f"a class tree needs at least 2 classes, the statistics hold "
                f"{statistics.num_classes}"
            )
        if not bool((statistics.counts >= 2).any()):
            raise ValueError(
                "a class tree needs at least one class with 2 or more samples "
                "(d0 is the mean intra-class spread)"
            )
        self.linkage = linkage
        self.level_start = level_start
        self.statistics = statistics
        self._derive_class_moments()

        counts = statistics.counts
        multi = counts >= 2
        spread = torch.zeros_like(counts)
        n, S2 = counts[multi], torch.linalg.vector_norm(statistics.sums, dim=1)[multi] ** 2
        spread[multi] = ((2 * n * statistics.squared_norms[multi] - 2 * S2) / (n * (n - 1))).clamp(
            min=0
        )
        self.d0 = float(spread[multi].mean())
        spread[~multi] = self.d0
        self.spreads = spread
        levels = torch.arange(self.num_levels + 1, dtype=torch.float64, device=counts.device)
        self.thresholds = levels * (MAX_SQUARED_DISTANCE - self.d0) / self.num_levels + self.d0
        self._build_dendrogram(num_neighbors)
        #: wall time of this build (statistics to level tables), for the logs
        self.build_seconds = time.perf_counter() - start

    def _build_dendrogram(self, num_neighbors: int) -> None:
        C, device = self.num_classes, self.device
        dtype = matrix_dtype(C)
        if self.linkage == "average" and C > AVERAGE_DENSE_MAX_CLASSES:
            s = self.statistics
            backend = NeighborListBackend(s.counts, s.sums, s.squared_norms, num_neighbors, dtype)
            self.neighbors, _ = backend.neighbors()
            initial = None  # the lists answer the first search themselves
        else:
            backend, self.neighbors = self._dense_backend(num_neighbors, dtype)
            initial = self.neighbors[:, 0]
        merges = agglomerate(backend, C, device=device, initial=initial)
        del backend
        self.merges = torch.from_numpy(merges).to(device)
        assignments = cut_levels(merges, C, self.thresholds.cpu().numpy())
        self.level_assignments = torch.from_numpy(assignments).to(device)

    def _dense_backend(
        self, num_neighbors: int, dtype: torch.dtype
    ) -> Tuple[DenseBackend, torch.Tensor]:
        """The matrix backend and each class's ``num_neighbors`` nearest classes."""
        C, device = self.num_classes, self.device
        if not dense_distances_fit(C, DENSE_MAX_BYTES):
            raise ValueError(
                f"{self.linkage!r} linkage needs a {C} x {C} distance matrix "
                f"({C * C * 4 / 2**30:.1f} GiB); use linkage='average', which needs none"
            )
        distances = torch.empty(C, C, dtype=dtype, device=device)
        moments = self._moments(dtype)
        for start in range(0, C, _ROW_BLOCK):
            rows = torch.arange(start, min(start + _ROW_BLOCK, C), device=device)
            distances[rows] = self._class_distance_block(rows, None, moments)
        k = min(num_neighbors, C - 1)
        backend = DenseBackend(distances, self.counts, self.linkage)  # diagonal set to inf
        neighbors = torch.cat(
            [
                torch.topk(distances[start : start + _ROW_BLOCK], k, dim=1, largest=False).indices
                for start in range(0, C, _ROW_BLOCK)
            ]
        )
        return backend, neighbors

    def _derive_class_moments(self) -> None:
        s = self.statistics
        self.labels = s.labels
        self.counts = s.counts
        self.means = s.sums / s.counts[:, None]
        self.mean_squared_norms = s.squared_norms / s.counts

    @classmethod
    def from_embeddings(
        cls,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        num_levels: int = 16,
        normalize: bool = True,
        **kwargs,
    ) -> "HierarchicalClassTree":
        """Build a tree from embeddings (L2-normalised first by default)."""
        statistics = ClassStatistics.from_embeddings(embeddings, labels, normalize=normalize)
        return cls(statistics, num_levels=num_levels, **kwargs)

    # ------------------------------------------------------------------ lookups
    @property
    def num_classes(self) -> int:
        return self.labels.shape[0]

    @property
    def device(self) -> torch.device:
        return self.labels.device

    def index_of(
        self, labels: torch.Tensor, allow_unknown: bool = False
    ) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        """Row of each label in the tree's tables.

        With ``allow_unknown`` returns ``(index, known)``; unknown labels get
        index 0 and ``known == False``. Otherwise an unknown label raises.
        """
        idx, known = self._rows_of(labels)
        if allow_unknown:
            return idx, known
        if not bool(known.all()):
            raise ValueError(self._unknown_labels_message(labels[~known]))
        return idx

    def _rows_of(self, labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(index, known) of each label, unknown labels at index 0; nothing read back."""
        if not torch.is_tensor(labels):
            raise TypeError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
        if labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise TypeError(
                f"labels must hold integer class labels, got dtype {labels.dtype}: "
                "pass labels.long()"
            )
        if labels.device != self.device:
            raise ValueError(
                f"the tree is on {self.device} but labels are on {labels.device}: "
                f"move the tree with tree.to(device)"
            )
        labels = labels.long()
        idx = torch.searchsorted(self.labels, labels.contiguous()).clamp(max=self.num_classes - 1)
        known = self.labels[idx] == labels
        return idx.masked_fill(~known, 0), known

    def _unknown_labels_message(self, unknown: torch.Tensor) -> str:
        missing = torch.unique(unknown)[:10].tolist()
        return (
            f"labels {missing} are not in the class tree (it knows "
            f"{self.num_classes} classes); rebuild the tree on data holding them"
        )

    def spread(self, labels: torch.Tensor) -> torch.Tensor:
        """s_c, the average squared distance between two samples of class c."""
        return self.spreads[self.index_of(labels)]

    def class_distance(self, labels_a: torch.Tensor, labels_b: torch.Tensor) -> torch.Tensor:
        """d(p, q), the average squared distance over cross-class sample pairs (broadcasts)."""
        ia, ib = self.index_of(labels_a), self.index_of(labels_b)
        d = (
            self.mean_squared_norms[ia]
            + self.mean_squared_norms[ib]
            - 2 * (self.means[ia] * self.means[ib]).sum(-1)
        )
        return d.clamp(min=0)

    def _levels_of_indices(self, ia: torch.Tensor, ib: torch.Tensor) -> torch.Tensor:
        """H for broadcastable index tensors: once per distinct class pair where
        reading back is free (``torch.unique`` reads its size back), else for
        every pair."""
        if _sync.syncs_are_costly(ia.device):
            return self._levels_between(ia, ib)
        ua, inv_a = torch.unique(ia, return_inverse=True)
        ub, inv_b = torch.unique(ib, return_inverse=True)
        return self._levels_between(ua[:, None], ub[None, :])[inv_a, inv_b]

    def _levels_between(self, ia: torch.Tensor, ib: torch.Tensor) -> torch.Tensor:
        """H of each pair of broadcastable index tensors."""
        # The partitions are nested (d_l grows with l), so the number of levels
        # at which two classes are apart is the first level joining them.
        apart = self.level_assignments[:, ia] != self.level_assignments[:, ib]
        levels = apart.sum(0).clamp_(max=self.num_levels)
        if self.level_start:
            levels = levels.clamp(min=self.level_start)
        return levels

    def merge_level(self, labels_a: torch.Tensor, labels_b: torch.Tensor) -> torch.Tensor:
        """H(p, q): the first level whose threshold exceeds p and q's merge height."""
        return self._levels_of_indices(self.index_of(labels_a), self.index_of(labels_b))

    def merge_distance(self, labels_a: torch.Tensor, labels_b: torch.Tensor) -> torch.Tensor:
        """d_H(p, q) = d_{H(p, q)}, the threshold of the level where p and q merge."""
        return self.thresholds[self.merge_level(labels_a, labels_b)]

    def margin(
        self,
        anchor_labels: torch.Tensor,
        negative_labels: torch.Tensor,
        beta: float = 0.1,
        allow_unknown: bool = False,
        margin_scale: float = 1.0,
    ) -> torch.Tensor:
        """alpha = beta + lambda (d_H(y_a, y_n) - s_{y_a}), broadcast over the two
        label tensors; lambda (``margin_scale``) = 1 is the paper's margin.

        With ``allow_unknown`` a pair with a class the tree does not know gets
        alpha = beta instead of an error.
        """
        beta = check_beta(beta, MAX_SQUARED_DISTANCE)
        margin_scale = check_margin_scale(margin_scale)
        if allow_unknown:
            ia, known_a = self.index_of(anchor_labels, allow_unknown=True)
            ib, known_b = self.index_of(negative_labels, allow_unknown=True)
        else:
            ia, ib = self.index_of(anchor_labels), self.index_of(negative_labels)
        alpha = self._margin_of_indices(ia, ib, beta, margin_scale)
        if allow_unknown:
            alpha = torch.where(known_a & known_b, alpha, torch.full_like(alpha, beta))
        return alpha

    def _margin_of_indices(
        self, ia: torch.Tensor, ib: torch.Tensor, beta: float, margin_scale: float
    ) -> torch.Tensor:
        tree_part = self.thresholds[self._levels_of_indices(ia, ib)] - self.spreads[ia]
        return beta + (tree_part if margin_scale == 1 else margin_scale * tree_part)

    def margin_table(
        self,
        labels: torch.Tensor,
        ref_labels: torch.Tensor,
        beta: float = 0.1,
        allow_unknown: bool = False,
        dtype: torch.dtype = torch.float64,
        margin_scale: float = 1.0,
    ) -> torch.Tensor:
        """(B, M) alpha[a, n] = beta + lambda (d_H(y_a, y_n) - s_{y_a}) in ``dtype``
        for every sample of ``labels`` against every sample of ``ref_labels``.

        Where reading back is free (CPU) it is looked up once per pair of
        classes present. Where it is not (CUDA) nothing is read back: every
        pair of samples is looked up, and unknown labels fail a device-side
        assert (`require`).
        """
        if not _sync.syncs_are_costly(self.device):
            classes, inverse = torch.unique(labels, return_inverse=True)
            ref_classes, ref_inverse = torch.unique(ref_labels, return_inverse=True)
            table = self.margin(
                classes[:, None], ref_classes[None, :], beta, allow_unknown, margin_scale
            )
            return table.to(dtype)[inverse][:, ref_inverse]
        beta = check_beta(beta, MAX_SQUARED_DISTANCE)
        margin_scale = check_margin_scale(margin_scale)
        (ia, known_a), (ib, known_b) = self._rows_of(labels), self._rows_of(ref_labels)
        if not allow_unknown:
            require(
                known_a.all() & known_b.all(),
                "labels or ref_labels hold a class that is not in the class tree",
                lambda: self._unknown_labels_message(
                    torch.cat([labels[~known_a], ref_labels[~known_b]])
                ),
            )
        # rows of anchors at a time: the level comparison holds (L + 1) x rows x M
        rows = max(1, _PAIR_BLOCK // ((self.num_levels + 1) * max(ib.shape[0], 1)))
        table = torch.cat(
            [
                self._margin_of_indices(
                    ia[start : start + rows, None], ib[None, :], beta, margin_scale
                )
                for start in range(0, max(ia.shape[0], 1), rows)
            ]
        )
        if allow_unknown:
            table = torch.where(known_a[:, None] & known_b[None, :], table, beta)
        return table.to(dtype)

    def _moments(self, dtype: torch.dtype) -> Tuple[torch.Tensor, torch.Tensor]:
        """(mu_c, Q_c/n_c) in ``dtype``; below float64 moved to the mean of all
        samples first (distances do not change, and float32 keeps its
        precision far from the origin)."""
        means, squared_norms = self.means, self.mean_squared_norms
        if dtype != torch.float64:
            center = self.statistics.sums.sum(0) / self.counts.sum()
            means, squared_norms = centered_moments(means, squared_norms, center)
        return means.to(dtype), squared_norms.to(dtype)

    def _class_distance_block(
        self, rows: torch.Tensor, cols: Optional[torch.Tensor], moments=None
    ) -> torch.Tensor:
        means, squared_norms = self._moments(torch.float64) if moments is None else moments
        if cols is not None:
            return distance_block(
                means[rows], squared_norms[rows], means[cols], squared_norms[cols]
            )
        return distance_block(means[rows], squared_norms[rows], means, squared_norms)

    def nearest_classes(
        self, labels: torch.Tensor, k: int, candidates: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """The k classes nearest to each label by d(p, q), nearest first.

        Args:
            labels: (N,) class labels.
            k: number of neighbours (the class itself is never among them).
            candidates: labels to choose from (default: every class in the tree).

        Returns:
            (N, k) tensor of class labels.
        """
        check_labels(labels)
        rows = self.index_of(labels)
        cols = None if candidates is None else self.index_of(candidates)
        check_positive_int(k, "k")
        if cols is None:
            available = self.num_classes - 1
        else:
            query_among = bool(torch.isin(rows, cols).any())
            available = cols.shape[0] - int(query_among)
        if k > available:
            raise ValueError(
                f"k={k} neighbours asked for, but only {available} other candidate classes exist"
            )
        if cols is None and k <= self.neighbors.shape[1]:
            return self.labels[self.neighbors[rows, :k]]
        col_labels = self.labels if cols is None else self.labels[cols]
        out = []
        for start in range(0, rows.shape[0], _ROW_BLOCK):
            block = rows[start : start + _ROW_BLOCK]
            dist = self._class_distance_block(block, cols)
            dist[self.labels[block][:, None] == col_labels[None, :]] = float("inf")
            out.append(col_labels[torch.topk(dist, k, dim=1, largest=False).indices])
        return torch.cat(out)

    # --------------------------------------------------------------- state
    def to(self, device) -> "HierarchicalClassTree":
        """This tree on ``device`` (``self`` when it is already there)."""
        device = torch.empty(0, device=device).device  # "cuda" -> "cuda:<current>"
        if device == self.device:
            return self
        return HierarchicalClassTree.from_state_dict(
            {k: v.to(device) for k, v in self.state_dict().items()}
        )

    def state_dict(self) -> Dict[str, torch.Tensor]:
        """Plain tensors only, so weights-only ``torch.load`` restores it."""
        state = {f"statistics.{k}": v for k, v in self.statistics.state_dict().items()}
        state.update(
            num_levels=torch.tensor(self.num_levels),
            linkage=torch.tensor(LINKAGES.index(self.linkage)),
            level_start=torch.tensor(self.level_start),
            spreads=self.spreads,
            thresholds=self.thresholds,
            neighbors=self.neighbors,
            merges=self.merges,
            level_assignments=self.level_assignments,
        )
        return state

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        """Replace this tree by the one in ``state`` (all or nothing)."""
        try:
            statistics = ClassStatistics.from_state_dict(
                {
                    k[len("statistics.") :]: v
                    for k, v in state.items()
                    if k.startswith("statistics.")
                }
            )
            values = dict(
                num_levels=int(state["num_levels"]),
                linkage=LINKAGES[int(state["linkage"])],
                level_start=int(state["level_start"]),
                spreads=state["spreads"],
                thresholds=state["thresholds"],
                neighbors=state["neighbors"],
                merges=state["merges"],
                level_assignments=state["level_assignments"],
            )
        except KeyError as e:
            raise ValueError(f"state is not a HierarchicalClassTree state_dict: missing {e}")
        C, L = statistics.num_classes, values["num_levels"]
        if values["level_assignments"].shape != (L + 1, C) or values["thresholds"].shape != (
            L + 1,
        ):
            raise ValueError("state is inconsistent: level tables do not match the class count")
        self.statistics = statistics
        self.__dict__.update(values)
        self.d0 = float(values["thresholds"][0])
        self._derive_class_moments()

    @classmethod
    def from_state_dict(cls, state: Dict[str, torch.Tensor]) -> "HierarchicalClassTree":
        tree = cls.__new__(cls)
        tree.load_state_dict(state)
        return tree

    def linkage_matrix(self) -> np.ndarray:
        """The merges as a SciPy linkage matrix Z, for
        ``scipy.cluster.hierarchy.dendrogram`` and friends.

        Leaf ``i`` is the class ``labels[i]``; row k merges nodes ``Z[k, 0]``
        and ``Z[k, 1]`` at the height ``Z[k, 2]`` (their average squared
        distance, the scale of d_l) into node C + k, holding ``Z[k, 3]``
        classes. Rows are sorted by height. Two classes sit apart at level l
        exactly when their merge height is at least d_l.

        Example:
            >>> import torch
            >>> from pml_htl import HierarchicalClassTree
            >>> labels = torch.arange(5).repeat_interleave(8)
            >>> tree = HierarchicalClassTree.from_embeddings(torch.randn(40, 8), labels)
            >>> tree.linkage_matrix().shape  # (C - 1, 4)
            (4, 4)
        """
        merges = self.merges.cpu().numpy()
        order = np.argsort(merges[:, 2], kind="stable")
        C = self.num_classes
        node = np.arange(C)  # the node each representative class stands for now
        sizes = np.ones(2 * C - 1)
        Z = np.empty((len(merges), 4))
        for k, row in enumerate(merges[order]):
            i, j = int(row[0]), int(row[1])
            a, b = sorted((node[i], node[j]))
            sizes[C + k] = sizes[a] + sizes[b]
            Z[k] = (a, b, row[2], sizes[C + k])
            node[i] = node[j] = C + k
        return Z

    def nodes_per_level(self) -> torch.Tensor:
        """(L + 1,) the number of nodes at each level (C at level 0 when d0 joins none)."""
        ids = torch.sort(self.level_assignments, dim=1).values
        return (ids[:, 1:] != ids[:, :-1]).sum(1) + 1

    def summary(self) -> str:
        """One line for the logs: classes, d0, nodes per level up to the root, time."""
        nodes = self.nodes_per_level().tolist()
        root = nodes.index(1) if 1 in nodes else self.num_levels
        seconds = getattr(self, "build_seconds", None)
        return (
            f"{self.num_classes} classes, d0 {self.d0:.4f}, nodes per level "
            f"{' '.join(map(str, nodes[: root + 1]))} (one node from level {root} of "
            f"{self.num_levels}), {self.linkage} linkage"
            + ("" if seconds is None else f", built in {seconds:.3f} s")
        )

    def __repr__(self) -> str:
        return (
            f"HierarchicalClassTree(num_classes={self.num_classes}, num_levels={self.num_levels}, "
            f"linkage={self.linkage!r}, level_start={self.level_start}, d0={self.d0:.4f}, "
            f"device={self.device})"
        )
