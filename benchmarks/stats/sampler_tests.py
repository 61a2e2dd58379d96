"""Does the A-N sampler help every loss? Each "<loss>_an" row against its loss on
MPerClassSampler batches, paired by seed and query as the other tests are
(significance.py), Holm-corrected as a family of their own."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence

from benchmarks.stats import paired
from benchmarks.stats.significance import correct, tests_table


def sampler_tests(
    runs: List[Dict[str, Any]], losses: Sequence[str], an_rows: Mapping[str, str]
) -> List[Dict[str, Any]]:
    """One paired test per (``<loss>_an``, ``<loss>``) pair of ``an_rows`` where both
    ran on a shared seed."""
    tests = []
    for an_row, loss in an_rows.items():
        if an_row not in losses or loss not in losses:
            continue
        mine = [r for r in runs if r["loss"] == an_row]
        theirs = [r for r in runs if r["loss"] == loss]
        if not {r["seed"] for r in mine} & {r["seed"] for r in theirs}:
            continue
        if any(r["final"].get("mean_average_precision_at_r") is None for r in mine + theirs):
            continue
        tests.append({"loss": an_row, "against": loss, **paired.compare_runs(mine, theirs)})
    correct(tests)
    return tests


def sampler_tests_markdown(tests: List[Dict[str, Any]], titles: Mapping[str, str]) -> str:
    """results.md's section on the sampler tests (differences: A-N minus MPerClass)."""
    if not tests:
        return ""
    return (
        "\n## Does the A-N sampler help every loss?\n\n"
        "Each loss on anchor-neighbour batches minus the same loss on MPerClassSampler "
        "batches, in points, on the same test queries and seeds, tested as in Paired "
        "tests (R@1: paired bootstrap and McNemar; MAP@R: paired t-test); p Holm: "
        "Holm-corrected over this table, per metric.\n\n" + tests_table(tests, titles)
    )
