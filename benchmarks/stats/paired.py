"""Two losses compared on the same seeds and test queries.

- ``paired_t_test``: two losses' metric paired by seed (mAP@R, or any per-seed number).
- ``mcnemar_test``: exact McNemar test on two models' per-query Recall@1 hits (one seed).
- ``paired_bootstrap``: Recall@1 difference over all seeds, resampling the shared queries.
- ``compare_runs``: all of the above for two losses' run records, paired by seed.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
from scipy import stats as scipy_stats
from statsmodels.stats.contingency_tables import mcnemar as _sm_mcnemar

from benchmarks.stats.inputs import check_confidence, finite_vector, hit_array
from benchmarks.stats.intervals import t_interval

# Largest number of gathered elements per chunk of bootstrap resamples (int64: 32 MiB).
_CHUNK_ELEMENTS = 1 << 22

Hit = Union[bool, int]


def mcnemar_test(hits_a: Sequence[Hit], hits_b: Sequence[Hit]) -> Dict[str, Any]:
    """Exact (binomial) McNemar test of two models' 0/1 hits on the same queries, in order.

    Returns ``{"n_queries", "b", "c", "p_value"}``: ``b`` counts queries model a gets right and
    b wrong, ``c`` the reverse; the two-sided p-value is 2 * P(Binomial(b + c, 1/2) <= min(b, c)),
    capped at 1 (1.0 when b == c, including b == c == 0).
    """
    a = hit_array(hits_a, "hits_a", ndim=1)
    b_hits = hit_array(hits_b, "hits_b", ndim=1)
    if a.shape != b_hits.shape:
        raise ValueError(
            f"hits_a and hits_b must have the same length, got {a.size} and {b_hits.size}"
        )
    both = int(np.sum((a == 1) & (b_hits == 1)))
    b = int(np.sum((a == 1) & (b_hits == 0)))
    c = int(np.sum((a == 0) & (b_hits == 1)))
    neither = int(a.size) - both - b - c
    result = _sm_mcnemar([[both, b], [c, neither]], exact=True)
    return {"n_queries": int(a.size), "b": b, "c": c, "p_value": float(result.pvalue)}


def paired_bootstrap(
    hits_a: Sequence[Sequence[int]],
    hits_b: Sequence[Sequence[int]],
    num_resamples: int = 10000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Dict[str, Any]:
    """Paired bootstrap of the Recall@1 difference (a minus b), averaged over seeds.

    ``hits_x[s][q]`` is seed s's 0/1 hit on query q; every seed evaluates the same queries, so one
    resample of query indices is applied to every seed (and both models). The statistic is
    mean over seeds of (R@1 of a - R@1 of b), in [-1, 1].

    Returns ``{"difference", "low", "high", "p_value", "num_resamples", "num_seeds",
    "n_queries"}``: the observed difference, its percentile confidence interval, and the two-sided
    p-value min(1, 2 * min(P(boot <= 0), P(boot >= 0))), each fraction taken as
    (count + 1) / (num_resamples + 1). When every query's seed-summed difference is exactly 0,
    every resample is 0 and the p-value is 1.
    """
    confidence = check_confidence(confidence)
    if isinstance(num_resamples, bool) or int(num_resamples) != num_resamples:
        raise ValueError(f"num_resamples must be an integer, got {num_resamples!r}")
    num_resamples = int(num_resamples)
    if num_resamples < 1:
        raise ValueError(f"num_resamples must be at least 1, got {num_resamples}")
    a = hit_array(hits_a, "hits_a", ndim=2)
    b = hit_array(hits_b, "hits_b", ndim=2)
    if a.shape != b.shape:
        raise ValueError(
            f"hits_a and hits_b must have the same (seeds, queries) shape, got {a.shape} "
            f"and {b.shape}"
        )
    num_seeds, n_queries = a.shape
    # Mean over seeds of the per-seed mean difference == sum of (a - b) / (seeds * queries), so a
    # resample only needs the per-query sum over seeds; integer sums make "exactly 0" exact.
    per_query = (a - b).sum(axis=0)
    scale = float(num_seeds * n_queries)
    difference = float(per_query.sum() / scale)

    totals = np.empty(num_resamples, dtype=np.int64)
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_ELEMENTS // n_queries)
    for start in range(0, num_resamples, chunk):
        rows = min(chunk, num_resamples - start)
        indices = rng.integers(0, n_queries, size=(rows, n_queries))
        totals[start : start + rows] = per_query[indices].sum(axis=1)

    boot = totals / scale
    low, high = np.quantile(boot, [(1.0 - confidence) / 2.0, (1.0 + confidence) / 2.0])
    if not np.any(per_query):
        p_value = 1.0
    else:
        at_most = (int(np.sum(totals <= 0)) + 1) / (num_resamples + 1)
        at_least = (int(np.sum(totals >= 0)) + 1) / (num_resamples + 1)
        p_value = min(1.0, 2.0 * min(at_most, at_least))
    return {
        "difference": difference,
        "low": float(low),
        "high": float(high),
        "p_value": float(p_value),
        "num_resamples": num_resamples,
        "num_seeds": int(num_seeds),
        "n_queries": int(n_queries),
    }


def paired_t_test(
    values_a: Sequence[float], values_b: Sequence[float], confidence: float = 0.95
) -> Dict[str, Any]:
    """Paired t-test of a - b over seeds paired by index (scipy.stats.ttest_rel, two-sided).

    Returns ``{"n", "difference", "low", "high", "p_value", "cohens_dz"}``: the mean difference,
    its t confidence interval, the p-value and Cohen's d_z = mean(d) / std(d, ddof=1).
    With n < 2 only ``n`` and ``difference`` are set (the rest None). When all differences are
    equal (std 0) the t statistic is undefined: all zero gives p_value 1.0 and cohens_dz 0.0;
    equal and nonzero gives p_value 0.0 and cohens_dz None (infinite); ``low`` == ``high`` ==
    ``difference`` in both cases.
    """
    confidence = check_confidence(confidence)
    a = finite_vector(values_a, "values_a")
    b = finite_vector(values_b, "values_b")
    if a.shape != b.shape:
        raise ValueError(
            f"values_a and values_b must have the same length, got {a.size} and {b.size}"
        )
    d = a - b
    n = int(d.size)
    mean = float(d.mean())
    result: Dict[str, Any] = {
        "n": n,
        "difference": mean,
        "low": None,
        "high": None,
        "p_value": None,
        "cohens_dz": None,
    }
    if n < 2:
        return result
    if np.all(d == d[0]):
        result.update(low=mean, high=mean)
        if mean == 0.0:
            result.update(p_value=1.0, cohens_dz=0.0)
        else:
            result.update(p_value=0.0, cohens_dz=None)
        return result
    interval = t_interval(d, confidence)
    result.update(
        low=interval["low"],
        high=interval["high"],
        p_value=float(scipy_stats.ttest_rel(a, b).pvalue),
        cohens_dz=mean / interval["std"],
    )
    return result


def _runs_by_seed(runs: List[Dict[str, Any]], name: str) -> Dict[int, Dict[str, Any]]:
    by_seed: Dict[int, Dict[str, Any]] = {}
    for run in runs:
        if not isinstance(run, dict) or "seed" not in run:
            raise ValueError(f"every run in {name} must be a dict with a 'seed'")
        if run["seed"] in by_seed:
            raise ValueError(f"{name} holds seed {run['seed']!r} more than once")
        by_seed[run["seed"]] = run
    return by_seed


def _parse_hits(hits: Any, name: str) -> np.ndarray:
    if isinstance(hits, str):
        if set(hits) - {"0", "1"}:
            raise ValueError(f"{name} must be a string of '0'/'1' characters")
        hits = [int(ch) for ch in hits]
    return hit_array(hits, name, ndim=1)


def _final_metric(run: Dict[str, Any], metric: str, name: str) -> float:
    try:
        return float(run["final"][metric])
    except (KeyError, TypeError):
        raise ValueError(f"run of seed {run['seed']!r} in {name} lacks final[{metric!r}]") from None


def compare_runs(
    runs_a: List[Dict[str, Any]],
    runs_b: List[Dict[str, Any]],
    num_resamples: int = 10000,
    seed: int = 0,
) -> Dict[str, Any]:
    """Compare two losses' runs, paired by seed (only seeds present in both).

    Each run is ``{"seed", "final": {"mean_average_precision_at_r", ...},
    "query_hits_at_1": "0110..."}`` (hits optional). Returns ``{"seeds", "recall_at_1",
    "mean_average_precision_at_r"}``: ``recall_at_1`` is the ``paired_bootstrap`` result plus
    ``"mcnemar_per_seed"`` (a list of ``{"seed", **mcnemar_test}``), or None when any paired
    run lacks its hits; ``mean_average_precision_at_r`` is the ``paired_t_test`` result.
    """
    by_seed_a = _runs_by_seed(runs_a, "runs_a")
    by_seed_b = _runs_by_seed(runs_b, "runs_b")
    seeds = sorted(set(by_seed_a) & set(by_seed_b))
    if not seeds:
        raise ValueError("runs_a and runs_b share no seed")
    pairs = [(by_seed_a[s], by_seed_b[s]) for s in seeds]

    recall: Optional[Dict[str, Any]] = None
    if all(
        run_a.get("query_hits_at_1") is not None and run_b.get("query_hits_at_1") is not None
        for run_a, run_b in pairs
    ):
        hits_a = [
            _parse_hits(run_a["query_hits_at_1"], "runs_a query_hits_at_1") for run_a, _ in pairs
        ]
        hits_b = [
            _parse_hits(run_b["query_hits_at_1"], "runs_b query_hits_at_1") for _, run_b in pairs
        ]
        lengths = {h.size for h in hits_a + hits_b}
        if len(lengths) != 1:
            raise ValueError(
                f"query_hits_at_1 of runs_a and runs_b must all have the same length, "
                f"got lengths {sorted(lengths)}"
            )
        recall = paired_bootstrap(hits_a, hits_b, num_resamples=num_resamples, seed=seed)
        recall["mcnemar_per_seed"] = [
            {"seed": s, **mcnemar_test(h_a, h_b)} for s, h_a, h_b in zip(seeds, hits_a, hits_b)
        ]

    metric = "mean_average_precision_at_r"
    map_a = [_final_metric(run_a, metric, "runs_a") for run_a, _ in pairs]
    map_b = [_final_metric(run_b, metric, "runs_b") for _, run_b in pairs]
    return {
        "seeds": seeds,
        "recall_at_1": recall,
        "mean_average_precision_at_r": paired_t_test(map_a, map_b),
    }
