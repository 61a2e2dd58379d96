"""--select-on-val: the checkpoint the held-out training classes choose, and the
test accuracy there. The test curve is read at the chosen iteration only: the
test classes choose nothing."""

from __future__ import annotations

from typing import Any, Dict, List

from benchmarks.evaluation.evaluate import QUERY_HITS

#: What chooses the checkpoint.
SELECTION_METRIC = "mean_average_precision_at_r"


def best_iteration(validation_curve: List[Dict[str, Any]]) -> int:
    """The evaluated iteration with the highest validation MAP@R (ties: the earlier)."""
    if not validation_curve:
        raise ValueError("no validation evaluation to choose from")
    best = max(validation_curve, key=lambda p: (p[SELECTION_METRIC], -p["iteration"]))
    return int(best["iteration"])


def selected_checkpoint(
    validation_curve: List[Dict[str, Any]], test_curve: List[Dict[str, Any]]
) -> Dict[str, Any]:
    """The validation-best iteration, its validation metrics and the test metrics
    evaluated there."""
    iteration = best_iteration(validation_curve)
    validation = next(p for p in validation_curve if p["iteration"] == iteration)
    test = next(p for p in test_curve if p["iteration"] == iteration)

    def metrics(point: Dict[str, Any]) -> Dict[str, Any]:
        return {k: v for k, v in point.items() if k not in ("epoch", "iteration", QUERY_HITS)}

    return {
        "iteration": iteration,
        "epoch": validation["epoch"],
        "selected_by": f"validation {SELECTION_METRIC}",
        "validation": metrics(validation),
        "test": metrics(test),
    }
