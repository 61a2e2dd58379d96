"""PML's AccuracyCalculator with Recall@K as the metric-learning papers define it.

Recall@K (Song et al. 2016; Ge et al. 2018) is the
fraction of queries that have at least one sample of their own class among
their K nearest neighbours. It is not the information-retrieval recall: one
hit is enough. Recall@1 therefore equals PML's ``precision_at_1``.
"""

from __future__ import annotations

import functools
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from pytorch_metric_learning.distances import CosineSimilarity
from pytorch_metric_learning.utils import common_functions as c_f
from pytorch_metric_learning.utils.inference import CustomKNN

from benchmarks.evaluation.faiss_device import faiss_available, faiss_kmeans, faiss_knn
from benchmarks.pml_compat import (
    EQUALITY,
    AccuracyCalculator,
    maybe_get_avg_of_avgs,
    nan_accuracy,
    try_getting_not_lone_labels,
)

__all__ = [
    "AccuracyCalculator",
    "DEFAULT_RECALL_AT_KS",
    "RecallAtKAccuracyCalculator",
    "faiss_available",
    "make_accuracy_calculator",
    "recall_at_k",
]

#: The Ks of CUB-200-2011 and Cars196 tables.
DEFAULT_RECALL_AT_KS = (1, 2, 4, 8)

_CLUSTERING = ("NMI", "AMI")


def recall_at_k(
    knn_labels: torch.Tensor,
    gt_labels: torch.Tensor,
    k: int,
    avg_of_avgs: bool = False,
    return_per_class: bool = False,
    label_comparison_fn=EQUALITY,
):
    """Fraction of queries with a same-class sample among the first k
    columns of ``knn_labels`` (neighbours sorted nearest first).

    ``gt_labels`` has shape (num_queries, 1) (or (num_queries, 1, D) for
    multi-dimensional labels), like PML's ``precision_at_k``.
    """
    same = label_comparison_fn(gt_labels, knn_labels[:, :k])
    if same.ndim > 2:  # multi-dimensional labels compared element-wise
        same = c_f.torch_all_from_dim_to_end(same, 2)
    hit = torch.any(same.bool(), dim=1).type(torch.float64)
    return maybe_get_avg_of_avgs(hit, gt_labels, avg_of_avgs, return_per_class)


def _check_ks(recall_at_ks) -> Tuple[int, ...]:
    if isinstance(recall_at_ks, int):
        recall_at_ks = (recall_at_ks,)
    ks = tuple(recall_at_ks)
    if len(ks) == 0 or not all(
        isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in ks
    ):
        raise ValueError(
            f"recall_at_ks must be a non-empty sequence of positive ints, got {recall_at_ks!r}"
        )
    return tuple(sorted(set(ks)))


class RecallAtKAccuracyCalculator(AccuracyCalculator):
    """``AccuracyCalculator`` with the metrics ``recall_at_{K}`` added.

    A query is a hit at K when ANY of its K nearest neighbours in the
    reference set shares its class (the query itself is not its own
    neighbour when query = reference, i.e. ``get_accuracy(q, q_labels)``).
    ``recall_at_1`` equals ``precision_at_1``. Neighbours are ranked by the
    k-NN function (PML's default: faiss, exact L2); ties in distance are
    broken by that function, as for every PML k-NN metric.

    Queries whose class has no other sample in the reference set ("lone"
    queries) follow PML's rule for all its k-NN metrics: they are left out
    of the average (they could never be hits). Their samples still serve as
    references, i.e. as neighbours (negatives) of the other queries. When
    every query is lone, the metric is NaN.

    Args:
        recall_at_ks: the Ks (default 1, 2, 4, 8); metrics ``recall_at_1``,
            ``recall_at_2``, ...
        k: neighbours retrieved per query, as in PML. Default
            ``"max_bin_count"`` (what MAP@R and R-precision need), raised to
            the largest K when that is smaller; ``None`` retrieves every
            reference. An int smaller than the largest K raises ValueError.
            The number of neighbours is capped at the number of references
            (a Recall@K with K above it counts all references). PML's own
            metrics still see exactly the neighbours that ``k`` gives them
            (``mean_average_precision`` and ``mean_reciprocal_rank`` depend
            on it), so adding Recall@K never changes them.
        normalize_embeddings: L2-normalise query and reference embeddings
            before anything else (the default of PML's testers). With it,
            faiss's L2 ranking equals the cosine ranking.
        include, exclude, avg_of_avgs, return_per_class, label_comparison_fn,
        device, knn_func, kmeans_func: as in PML's ``AccuracyCalculator``.

    Also fixes PML 2.9.0's ``requires_knn`` omission of
    ``mean_reciprocal_rank`` (``include=("mean_reciprocal_rank",)`` alone
    raised a KeyError).
    """

    def __init__(
        self,
        recall_at_ks: Sequence[int] = DEFAULT_RECALL_AT_KS,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        avg_of_avgs: bool = False,
        return_per_class: bool = False,
        k: Union[int, str, None] = "max_bin_count",
        label_comparison_fn=None,
        device: Optional[torch.device] = None,
        knn_func=None,
        kmeans_func=None,
        normalize_embeddings: bool = False,
    ):
        self.recall_at_ks = _check_ks(recall_at_ks)
        # The base class discovers metrics as the attributes named
        # calculate_*; add one per K before it looks.
        for K in self.recall_at_ks:
            setattr(
                self,
                f"calculate_recall_at_{K}",
                functools.partial(self._calculate_recall_at_k, K),
            )
        self.normalize_embeddings = bool(normalize_embeddings)
        if isinstance(device, str):
            device = torch.device(device)
        if knn_func is None and faiss_available():
            knn_func = faiss_knn(device or c_f.use_cuda_if_available())
        super().__init__(
            include=include,
            exclude=exclude,
            avg_of_avgs=avg_of_avgs,
            return_per_class=return_per_class,
            k=k,
            label_comparison_fn=label_comparison_fn,
            device=device,
            knn_func=knn_func,
            kmeans_func=kmeans_func,
        )
        largest = self._largest_k(self.get_function_dict())
        if isinstance(self.k, int) and largest is not None and self.k < largest:
            raise ValueError(
                f"k={self.k} is smaller than the largest Recall@K ({largest}): "
                f"pass k >= {largest}, k='max_bin_count' or k=None"
            )

    @staticmethod
    def recall_metric_name(K: int) -> str:
        return f"recall_at_{K}"

    def _largest_k(self, metrics) -> Optional[int]:
        ks = [K for K in self.recall_at_ks if self.recall_metric_name(K) in metrics]
        return max(ks) if ks else None

    def requires_knn(self):
        return super().requires_knn() + [
            "mean_reciprocal_rank",
            *(self.recall_metric_name(K) for K in self.recall_at_ks),
        ]

    def determine_k(self, bin_counts, num_reference_embeddings, ref_includes_query):
        available = max(1, num_reference_embeddings - int(ref_includes_query))
        k = super().determine_k(bin_counts, num_reference_embeddings, ref_includes_query)
        # PML's own metrics get exactly the neighbours PML would give them
        # (see _get_accuracy); only the k-NN search goes as far as max K.
        self._pml_k = min(k, available)
        largest = self._largest_k(self.get_curr_metrics())
        if largest is not None:
            k = max(k, largest)
        return min(k, available)

    def _get_accuracy(self, function_dict, **kwargs):
        knn_labels = kwargs.get("knn_labels")
        pml_k = getattr(self, "_pml_k", None)
        if knn_labels is None or pml_k is None or pml_k >= knn_labels.shape[1]:
            return super()._get_accuracy(function_dict, **kwargs)
        truncated = dict(kwargs)
        truncated["knn_labels"] = knn_labels[:, :pml_k]
        truncated["knn_distances"] = kwargs["knn_distances"][:, :pml_k]
        recall = {self.recall_metric_name(K) for K in self.recall_at_ks}
        return {
            name: fn(**(kwargs if name in recall else truncated))
            for name, fn in function_dict.items()
        }

    def _calculate_recall_at_k(
        self, K, knn_labels, query_labels, not_lone_query_mask, label_counts, **kwargs
    ):
        knn_labels, query_labels = try_getting_not_lone_labels(
            knn_labels, query_labels, not_lone_query_mask
        )
        if knn_labels is None:
            return nan_accuracy(label_counts[0], self.return_per_class)
        return recall_at_k(
            knn_labels,
            query_labels[:, None],
            K,
            self.avg_of_avgs,
            self.return_per_class,
            self.label_comparison_fn,
        )

    def get_accuracy(
        self,
        query,
        query_labels,
        reference=None,
        reference_labels=None,
        ref_includes_query=False,
        include=(),
        exclude=(),
    ):
        if self.normalize_embeddings:
            same = reference is None or reference is query
            query = F.normalize(c_f.numpy_to_torch(query).float(), dim=1)
            if reference is not None:
                reference = (
                    query if same else F.normalize(c_f.numpy_to_torch(reference).float(), dim=1)
                )
        return super().get_accuracy(
            query,
            query_labels,
            reference,
            reference_labels,
            ref_includes_query,
            include,
            exclude,
        )


def make_accuracy_calculator(
    recall_at_ks: Sequence[int] = DEFAULT_RECALL_AT_KS,
    device: Optional[Union[str, torch.device]] = None,
    normalize_embeddings: bool = True,
    knn_batch_size: int = 1024,
    **kwargs,
) -> RecallAtKAccuracyCalculator:
    """A :class:`RecallAtKAccuracyCalculator` that works with or without faiss.

    With faiss importable, PML's defaults are kept (exact faiss k-NN; faiss
    k-means for NMI/AMI, with its warning about few points per centroid turned
    off: test sets with many small classes always trigger it, and it changes
    nothing), both on ``device``'s GPU when it is CUDA and faiss has GPU
    support (a faiss-gpu wheel), on the CPU otherwise.
    Without it, the k-NN is ``CustomKNN(CosineSimilarity())`` in torch
    (batched by ``knn_batch_size`` queries) and NMI/AMI, which need faiss
    k-means, are excluded, unless ``kmeans_func`` is passed. Embeddings are
    L2-normalised by default, so both paths rank neighbours the same way.
    Other keyword arguments go to :class:`RecallAtKAccuracyCalculator`.
    """
    if isinstance(device, str):
        device = torch.device(device)
    if faiss_available() and kwargs.get("kmeans_func") is None:
        # PML's k-means (20 iterations), without the per-call faiss warning
        kwargs["kmeans_func"] = faiss_kmeans(
            device or c_f.use_cuda_if_available(), niter=20, min_points_per_centroid=1
        )
    if not faiss_available():
        if kwargs.get("knn_func") is None:
            kwargs["knn_func"] = CustomKNN(CosineSimilarity(), batch_size=knn_batch_size)
        if kwargs.get("kmeans_func") is None:
            include = tuple(kwargs.get("include", ()))
            asked = [m for m in include if m in _CLUSTERING]
            if asked:
                raise ValueError(
                    f"{asked} need faiss k-means: install faiss-cpu (or faiss-gpu) "
                    "or pass kmeans_func"
                )
            exclude = tuple(kwargs.get("exclude", ()))
            kwargs["exclude"] = exclude + tuple(m for m in _CLUSTERING if m not in exclude)
    return RecallAtKAccuracyCalculator(
        recall_at_ks=recall_at_ks,
        device=device,
        normalize_embeddings=normalize_embeddings,
        **kwargs,
    )
