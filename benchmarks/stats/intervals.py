"""The mean of one loss's metric over seeds and its t confidence interval."""

from __future__ import annotations

from typing import Any, Dict, Sequence

import numpy as np
from scipy import stats as scipy_stats

from benchmarks.stats.inputs import check_confidence, finite_vector


def t_interval(values: Sequence[float], confidence: float = 0.95) -> Dict[str, Any]:
    """Mean of ``values`` and its t confidence interval: mean +- t_{(1+c)/2, n-1} * std / sqrt(n).

    Returns ``{"n", "mean", "std", "half_width", "low", "high"}``; ``std`` has ddof=1. With a
    single value there is no spread: ``std``, ``half_width``, ``low`` and ``high`` are None.
    """
    confidence = check_confidence(confidence)
    array = finite_vector(values, "values")
    n = int(array.size)
    mean = float(array.mean())
    if n == 1:
        return {"n": 1, "mean": mean, "std": None, "half_width": None, "low": None, "high": None}
    std = float(array.std(ddof=1))
    half_width = float(scipy_stats.t.ppf((1.0 + confidence) / 2.0, n - 1) * std / np.sqrt(n))
    return {
        "n": n,
        "mean": mean,
        "std": std,
        "half_width": half_width,
        "low": mean - half_width,
        "high": mean + half_width,
    }
