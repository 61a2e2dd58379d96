"""Which differences between losses a comparison supports: 95% t intervals over
seeds, paired tests of every loss against HTL and against the triplet loss, Holm's
correction, and the marks results.md puts on significant differences.

- R@1: a paired bootstrap over the test queries (the same resample for every seed,
  combined over the seeds the two losses share), plus an exact McNemar test per seed.
- MAP@R: a paired t-test across seeds (same seed, same initial weights and data).
- Holm: one family per metric, over every test in the table.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from benchmarks.stats import paired
from benchmarks.stats.holm_correction import holm
from benchmarks.stats.intervals import t_interval

#: The losses every other loss is tested against, when they were run.
REFERENCES = ("htl", "triplet")
#: Metric -> its test in paired.compare_runs.
TESTED = ("recall_at_1", "mean_average_precision_at_r")
#: Marks of a significant difference (Holm-corrected p < ALPHA) in results.md.
MARKS = {"htl": "†", "triplet": "‡"}
ALPHA = 0.05


def intervals(
    runs: List[Dict[str, Any]],
    losses: Sequence[str],
    metrics: Sequence[str],
    scores: Callable[[Dict[str, Any]], Optional[Dict[str, Any]]] = lambda run: run["final"],
) -> Dict[str, Dict[str, Any]]:
    """{loss: {metric: t_interval over the loss's seeds}} of the runs' ``scores``
    (default: the final test metrics; None: a run without them)."""
    out: Dict[str, Dict[str, Any]] = {}
    for loss in losses:
        mine = [scores(r) for r in runs if r["loss"] == loss]
        mine = [s for s in mine if s is not None]
        row = {}
        for metric in metrics:
            values = [s[metric] for s in mine if s.get(metric) is not None]
            if values:
                row[metric] = t_interval(values)
        if row:
            out[loss] = row
    return out


def pairwise_tests(runs: List[Dict[str, Any]], losses: Sequence[str]) -> List[Dict[str, Any]]:
    """Each loss against each reference loss run (a pair once), Holm-corrected."""
    tests = []
    done = set()
    for reference in REFERENCES:
        ref_runs = [r for r in runs if r["loss"] == reference]
        if not ref_runs:
            continue
        for loss in losses:
            pair = frozenset((loss, reference))
            if loss == reference or pair in done:
                continue
            mine = [r for r in runs if r["loss"] == loss]
            seeds = {r["seed"] for r in mine} & {r["seed"] for r in ref_runs}
            if not seeds or not all(
                r["final"].get("mean_average_precision_at_r") is not None for r in mine + ref_runs
            ):
                continue  # nothing paired, or runs evaluated without MAP@R
            done.add(pair)
            result = paired.compare_runs(mine, ref_runs)
            tests.append({"loss": loss, "against": reference, **result})
    correct(tests)
    return tests


def _p_value(test: Dict[str, Any], metric: str) -> Optional[float]:
    result = test.get(metric)
    return None if result is None else result.get("p_value")


def correct(tests: List[Dict[str, Any]]) -> None:
    """Holm over each metric's family; writes p_holm and significant into each test."""
    for metric in TESTED:
        corrected = holm([_p_value(t, metric) for t in tests], alpha=ALPHA)
        for test, c in zip(tests, corrected):
            if test.get(metric) is not None:
                test[metric]["p_holm"] = c["p_holm"]
                test[metric]["significant"] = c["significant"]


def marks(tests: List[Dict[str, Any]], loss: str, metric: str) -> str:
    """The marks of ``loss``'s cell: one per reference it differs from significantly
    (the reference's own row carries the mark of the other side)."""
    out = ""
    for reference in REFERENCES:
        for test in tests:
            if {test["loss"], test["against"]} != {loss, reference} or loss == reference:
                continue
            result = test.get(metric)
            if result is not None and result.get("significant"):
                out += MARKS[reference]
    return out


def tests_markdown(tests: List[Dict[str, Any]], titles: Mapping[str, str]) -> str:
    """The table of paired tests (differences in points: first loss minus second)."""
    if not tests:
        return ""
    return (
        "\n## Paired tests\n\n"
        "Differences in points, the first loss minus the second, on the same test "
        "queries and seeds. R@1: paired bootstrap over the queries (10,000 resamples, the "
        "same resample for every seed), with its 95% interval; McNemar: exact test per "
        "seed, its p-values listed. MAP@R: paired t-test across seeds, with Cohen's d_z. "
        f"p Holm: Holm-corrected over the table, per metric; † / ‡ in the table above: "
        f"differs from HTL / from the triplet loss at p Holm < {ALPHA}.\n\n"
        + tests_table(tests, titles)
    )


def tests_table(tests: List[Dict[str, Any]], titles: Mapping[str, str]) -> str:
    """A table of paired tests, one row per test."""
    lines = [
        "| loss | against | seeds | ΔR@1 [95% CI] | p | p Holm | McNemar p per seed "
        "| ΔMAP@R [95% CI] | d_z | p | p Holm |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in tests:
        r1, mapr = t.get("recall_at_1"), t.get("mean_average_precision_at_r")
        if r1 is None:
            r1_cells = ["not recorded (no per-query hits)", "–", "–", "–"]
        else:
            r1_cells = [
                f"{_points(r1['difference'])} [{_points(r1['low'])}, {_points(r1['high'])}]",
                _p(r1["p_value"]),
                _p(r1.get("p_holm")) + (" *" if r1.get("significant") else ""),
                ", ".join(_p(m["p_value"]) for m in r1.get("mcnemar_per_seed", [])),
            ]
        ci = (
            "–" if mapr.get("low") is None else f"[{_points(mapr['low'])}, {_points(mapr['high'])}]"
        )
        dz = mapr.get("cohens_dz")
        lines.append(
            f"| {titles.get(t['loss'], t['loss'])} | {titles.get(t['against'], t['against'])} "
            f"| {len(t['seeds'])} | "
            + " | ".join(r1_cells)
            + f" | {_points(mapr['difference'])} {ci} | {'–' if dz is None else f'{dz:.2f}'} "
            f"| {_p(mapr.get('p_value'))} "
            f"| {_p(mapr.get('p_holm')) + (' *' if mapr.get('significant') else '')} |"
        )
    return "\n".join(lines) + "\n"


def _points(value: Optional[float]) -> str:
    return "–" if value is None else f"{100 * value:+.1f}"


def _p(value: Optional[float]) -> str:
    if value is None:
        return "–"
    return "<0.001" if value < 0.001 else f"{value:.3f}"
