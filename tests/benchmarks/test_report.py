"""results.md: a smoke run says it is one (no winner, no significance marks);
a run of 3 seeds or more ranks the losses and marks the tests."""

import json

import numpy as np

from benchmarks.config import RunConfig
from benchmarks.report import write_reports

R1, MAP = "recall_at_1", "mean_average_precision_at_r"
TITLES = {"triplet": "Triplet", "htl": "HTL"}


def run(loss, seed, r1, hits):
    """A finished run whose R@1 per query is ``hits``."""
    return {
        "loss": loss,
        "seed": seed,
        "final": {R1: r1, MAP: r1 / 2},
        "query_hits_at_1": hits,
        "seconds_per_iteration": 0.1,
        "tree_seconds": 0.0,
        "curve": [{"iteration": 0, R1: 0.1}, {"iteration": 10, R1: r1}],
    }


def runs(seeds):
    """HTL far above the triplet loss on every query: a certain difference."""
    rng = np.random.default_rng(0)
    out = []
    for seed in seeds:
        good = "".join("1" if x < 0.95 else "0" for x in rng.random(400))
        bad = "".join("1" if x < 0.30 else "0" for x in rng.random(400))
        out += [run("htl", seed, good.count("1") / 400, good)]
        out += [run("triplet", seed, bad.count("1") / 400, bad)]
    return out


def config(tmp_path, seeds, quick=False):
    return RunConfig(losses=["triplet", "htl"], seeds=seeds, recall_ks=[1], out=str(tmp_path),
                     epochs=1, iters_per_epoch=10, quick=quick)  # fmt: skip


def accuracy_rows(markdown):
    return [line for line in markdown.splitlines() if line.startswith(("| HTL", "| Triplet"))]


def test_a_run_of_three_seeds_marks_the_best_and_the_significant(tmp_path):
    md = write_reports(runs([0, 1, 2]), config(tmp_path, [0, 1, 2]), {}, TITLES)
    assert not md.startswith("# Smoke run")
    rows = accuracy_rows(md)
    assert any("**" in row for row in rows)
    assert any("‡" in row for row in rows)  # HTL differs from the triplet loss
    assert "## Paired tests" in md


def test_a_single_seed_run_is_a_smoke_run(tmp_path):
    md = write_reports(runs([0]), config(tmp_path, [0]), {}, TITLES)
    assert md.startswith("# Smoke run, not a finding:")
    assert "1 seed" in md.splitlines()[2]
    rows = accuracy_rows(md)
    assert rows and not any("**" in row or "†" in row or "‡" in row for row in rows)
    assert "## Paired tests" not in md
    tests = json.loads((tmp_path / "results.json").read_text())["statistics"]["tests"]
    assert tests, "the tests stay in results.json"


def test_a_quick_run_is_a_smoke_run_whatever_its_seeds(tmp_path):
    md = write_reports(runs([0, 1, 2]), config(tmp_path, [0, 1, 2], quick=True), {}, TITLES)
    assert md.startswith("# Smoke run, not a finding:") and "--quick" in md
    assert not any("**" in row or "‡" in row for row in accuracy_rows(md))
