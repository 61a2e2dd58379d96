"""Recall@K cut-offs: the data set's own (as the literature reports them, each data
set module's RECALL_KS) or the ones --recall-ks asks for."""

from __future__ import annotations

from typing import List, Optional, Tuple

from benchmarks.data.splits import DataSplits


def check_requested(ks: Optional[List[int]]) -> Optional[List[int]]:
    """--recall-ks as given (None when it is not): positive, distinct, 1 among them
    (R@1 is the number printed every epoch and the convergence plot's)."""
    if ks is None:
        return None
    bad = [k for k in ks if k < 1]
    if bad:
        raise SystemExit(f"error: --recall-ks takes positive integers, got {bad[0]}")
    twice = sorted({k for k in ks if ks.count(k) > 1})
    if twice:
        raise SystemExit(f"error: --recall-ks names {twice[0]} twice")
    if 1 not in ks:
        raise SystemExit(
            "error: --recall-ks must include 1 (R@1 is printed every epoch and plotted)"
        )
    return sorted(ks)


def neighbours_per_query(splits: DataSplits) -> int:
    """How many neighbours a query can have: the reference set, less the query itself
    when the query set is the reference set."""
    return len(splits.reference) - int(splits.query_is_reference)


def choose(
    splits: DataSplits, requested: Optional[List[int]], dataset: str
) -> Tuple[List[int], Optional[str]]:
    """(Ks, a notice or None). A K above the neighbours a query has would count every
    reference (a Recall@K of 1 for free): asked for with --recall-ks, it is an error;
    among the data set's own Ks (a miniature copy), it is left out with a notice."""
    n = neighbours_per_query(splits)
    where = "test split" if splits.query_is_reference else "gallery"
    if n < 1:
        raise SystemExit(
            f"error: --dataset {dataset}: a query has no neighbour in the {where} "
            f"({len(splits.reference)} image(s)); Recall@K needs at least two test images"
        )
    if requested is not None:
        too_large = [k for k in requested if k > n]
        if too_large:
            raise SystemExit(
                f"error: --recall-ks {too_large[0]}: a query of --dataset {dataset} has "
                f"{n} neighbours in the {where}; choose Ks up to {n}"
            )
        return list(requested), None
    ks = [k for k in splits.recall_ks if k <= n]
    dropped = [str(k) for k in splits.recall_ks if k > n]
    if not dropped:
        return ks, None
    return ks, (
        f"Recall@K: K = {', '.join(dropped)} left out, a query has only {n} neighbours "
        f"in the {where}"
    )
