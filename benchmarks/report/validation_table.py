"""--select-on-val in the reports: the test accuracy at each run's validation-best
checkpoint, over seeds, beside the final one."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from benchmarks.config import RunConfig
from benchmarks.stats import convergence

#: The columns of the table: (metric, title).
COLUMNS: Sequence[Tuple[str, str]] = (
    ("recall_at_1", "R@1"),
    ("mean_average_precision_at_r", "MAP@R"),
    ("r_precision", "R-Prec"),
)


def selected_test_scores(run: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The test metrics at a run's validation-best checkpoint (None: it chose none)."""
    chosen = run.get("selected_checkpoint")
    return None if chosen is None else chosen["test"]


def at_validation_best(runs: List[Dict[str, Any]], keys: Sequence[str]) -> Dict[str, Any]:
    """Of one loss's runs: [mean, std] over seeds of each test metric at the
    validation-best checkpoint, and of the chosen iteration ({} if none chose)."""
    chosen = [r["selected_checkpoint"] for r in runs if r.get("selected_checkpoint")]
    if not chosen:
        return {}
    out: Dict[str, Any] = {}
    for key in keys:
        values = [c["test"][key] for c in chosen if c["test"].get(key) is not None]
        if values:
            out[key] = [float(np.mean(values)), float(np.std(values))]
    iterations = [c["iteration"] for c in chosen]
    out["iteration"] = [float(np.mean(iterations)), float(np.std(iterations))]
    return out


def validation_markdown(
    table: Dict[str, Dict[str, Any]],
    cfg: RunConfig,
    titles: Mapping[str, str],
    statistics: Dict[str, Any],
) -> str:
    """The section "Test at the validation-best checkpoint" (empty without
    --select-on-val)."""
    rows = {loss: row for loss, row in table.items() if row.get("at_validation_best")}
    if not rows:
        return ""
    intervals = statistics.get("intervals_at_validation_best", {})
    speed = statistics.get("convergence", {}).get("losses", {})
    lines = [
        "\n## Test at the validation-best checkpoint\n",
        f"--select-on-val: {cfg.val_classes:.0%} of the training classes are held out (the "
        "same classes for every seed) and scored at every evaluation beside the test "
        "classes; each run's checkpoint is the evaluation with the best validation MAP@R "
        "(ties: the earlier), and these are the test metrics there (%, mean ± half width "
        "of the 95% t interval over seeds; the test classes choose nothing). iters to "
        "val.-best: the chosen iteration. final R@1: the last checkpoint's, as above.\n",
        "| loss | "
        + " | ".join(title for _, title in COLUMNS)
        + " | iters to val.-best | final R@1 | n |",
        "|" + "---|" * (len(COLUMNS) + 4),
    ]
    for loss, row in rows.items():
        cells = []
        for key, _ in COLUMNS:
            interval = intervals.get(loss, {}).get(key)
            if interval is None:
                cells.append("–")
                continue
            half = interval["half_width"]
            cells.append(
                f"{100 * interval['mean']:.1f}" + ("" if half is None else f" ± {100 * half:.1f}")
            )
        cells.append(convergence.cell(speed.get(loss, {}).get("to_validation_best")))
        final = row.get("recall_at_1")
        cells.append("–" if final is None else f"{100 * final[0]:.1f}")
        lines.append(f"| {titles[loss]} | " + " | ".join(cells) + f" | {len(row['seeds'])} |")
    return "\n".join(lines) + "\n"
