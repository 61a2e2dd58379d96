"""How fast each loss learns, from the R@1 curves compare.py records: the iterations
a run needs to reach 95% of the triplet loss's final R@1 (mean over its seeds), and
95% of its own final R@1, with a 95% t interval over seeds.

A run reaches a level at the first evaluation at or above it, so the resolution is
the evaluation interval (--eval-every epochs of --iters-per-epoch iterations); the
starting model is evaluated at iteration 0.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

from benchmarks.stats.intervals import t_interval

FRACTION = 0.95
REFERENCE = "triplet"
METRIC = "recall_at_1"


def iterations_to_reach(curve: List[Dict[str, Any]], level: float) -> Optional[int]:
    """The first evaluated iteration whose R@1 is >= ``level``; None if none is."""
    for point in curve:
        if point[METRIC] >= level:
            return int(point["iteration"])
    return None


def _summary(iterations: List[Optional[int]]) -> Dict[str, Any]:
    reached = [i for i in iterations if i is not None]
    out: Dict[str, Any] = {"per_seed": iterations, "reached": len(reached), "n": len(iterations)}
    # an interval only when every seed got there (otherwise it would flatter the loss)
    out["interval"] = t_interval(reached) if reached and len(reached) == len(iterations) else None
    return out


def convergence(runs: List[Dict[str, Any]], losses: Sequence[str]) -> Dict[str, Any]:
    """{"reference_level", "resolution", "losses": {loss: {"to_reference", "to_own_final"}}},
    and "to_validation_best" where the runs chose a checkpoint on held-out classes."""
    reference = [r["final"][METRIC] for r in runs if r["loss"] == REFERENCE]
    level = FRACTION * sum(reference) / len(reference) if reference else None
    result: Dict[str, Any] = {
        "fraction": FRACTION,
        "reference": REFERENCE if reference else None,
        "reference_level": level,
        "losses": {},
    }
    steps = sorted({p["iteration"] for r in runs for p in r["curve"]})
    gaps = [b - a for a, b in zip(steps, steps[1:])]
    result["resolution"] = max(gaps) if gaps else None
    for loss in losses:
        mine = [r for r in runs if r["loss"] == loss]
        if not mine:
            continue
        row = {
            "to_own_final": _summary(
                [iterations_to_reach(r["curve"], FRACTION * r["final"][METRIC]) for r in mine]
            )
        }
        if level is not None:
            row["to_reference"] = _summary([iterations_to_reach(r["curve"], level) for r in mine])
        chosen = [r["selected_checkpoint"]["iteration"] for r in mine if "selected_checkpoint" in r]
        if chosen:
            row["to_validation_best"] = _summary(chosen)
        result["losses"][loss] = row
    return result


def cell(summary: Optional[Dict[str, Any]]) -> str:
    """'300 ± 124' (mean ± 95% half width), '300' (one seed), or 'not reached (1/3)'."""
    if summary is None:
        return "–"
    interval = summary["interval"]
    if interval is None:
        return f"not reached ({summary['reached']}/{summary['n']} seeds)"
    if interval["half_width"] is None:
        return f"{interval['mean']:.0f}"
    return f"{interval['mean']:.0f} ± {interval['half_width']:.0f}"
