"""benchmarks/stats/convergence.py against hand-made R@1 curves and hand-computed iterations."""

import math

import pytest

from benchmarks.stats.convergence import cell, convergence, iterations_to_reach

T_975_DF2 = 4.302652729911275  # t table, 0.975 quantile, 2 degrees of freedom


def curve(points):
    return [{"iteration": i, "recall_at_1": r} for i, r in points]


def run(loss, seed, final, points):
    return {"loss": loss, "seed": seed, "final": {"recall_at_1": final}, "curve": curve(points)}


# Triplet finals 0.60, 0.64, 0.56: mean 0.60, reference level 0.95 * 0.60 = 0.57.
# Own levels: 0.570, 0.608, 0.532 (triplet); 0.665, 0.684, 0.646 (htl); 0.475 (contrastive).
RUNS = [
    run("triplet", 0, 0.60, [(0, 0.1), (100, 0.4), (200, 0.58), (300, 0.59), (400, 0.60)]),
    run("triplet", 1, 0.64, [(0, 0.1), (100, 0.5), (200, 0.56), (300, 0.62), (400, 0.64)]),
    run("triplet", 2, 0.56, [(0, 0.1), (100, 0.3), (200, 0.45), (300, 0.54), (400, 0.56)]),
    run("htl", 0, 0.70, [(0, 0.1), (100, 0.575), (200, 0.66), (300, 0.70), (400, 0.70)]),
    run("htl", 1, 0.72, [(0, 0.1), (100, 0.6), (200, 0.70), (300, 0.71), (400, 0.72)]),
    # evaluated at 600 instead of 500: the largest gap between evaluations is 200
    run(
        "htl",
        2,
        0.68,
        [(0, 0.1), (100, 0.5), (200, 0.58), (300, 0.64), (400, 0.66), (600, 0.68)],
    ),
    run("contrastive", 0, 0.50, [(0, 0.1), (100, 0.3), (200, 0.48), (300, 0.49), (400, 0.5)]),
]


def three_seed_interval(values):
    mean = sum(values) / 3
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / 2)
    return mean, T_975_DF2 * std / math.sqrt(3)


# ------------------------------------------------------- iterations_to_reach
def test_iterations_to_reach_first_evaluation_at_or_above():
    c = curve([(0, 0.1), (100, 0.6), (200, 0.4), (300, 0.7)])
    assert iterations_to_reach(c, 0.5) == 100  # the first, not the best
    assert iterations_to_reach(c, 0.65) == 300
    assert iterations_to_reach(c, 0.05) == 0
    assert iterations_to_reach(c, 0.71) is None
    assert iterations_to_reach([], 0.1) is None


def test_iterations_to_reach_equality_counts():
    c = curve([(0, 0.2), (50, 0.5), (80, 0.9)])
    assert iterations_to_reach(c, 0.5) == 50
    assert iterations_to_reach(c, 0.5000001) == 80
    assert iterations_to_reach(c, 0.9) == 80
    assert iterations_to_reach(c, 0.9000001) is None


def test_iterations_to_reach_returns_an_int():
    result = iterations_to_reach(curve([(0.0, 0.1), (250.0, 0.8)]), 0.5)
    assert result == 250 and type(result) is int


# -------------------------------------------------------------- convergence
def test_reference_level_and_resolution():
    result = convergence(RUNS, ["triplet", "htl", "contrastive"])
    assert result["fraction"] == 0.95
    assert result["reference"] == "triplet"
    assert result["reference_level"] == pytest.approx(0.57)
    assert result["resolution"] == 200


def test_iterations_per_seed_by_hand():
    rows = convergence(RUNS, ["triplet", "htl", "contrastive"])["losses"]
    assert set(rows) == {"triplet", "htl", "contrastive"}
    # to 0.57: triplet seed 2 never gets there (0.56 at best)
    assert rows["triplet"]["to_reference"]["per_seed"] == [200, 300, None]
    assert rows["htl"]["to_reference"]["per_seed"] == [100, 100, 200]
    assert rows["contrastive"]["to_reference"]["per_seed"] == [None]
    # to 95% of each run's own final R@1
    assert rows["triplet"]["to_own_final"]["per_seed"] == [200, 300, 300]
    assert rows["htl"]["to_own_final"]["per_seed"] == [300, 200, 400]
    assert rows["contrastive"]["to_own_final"]["per_seed"] == [200]


def test_intervals_only_when_every_seed_reached():
    rows = convergence(RUNS, ["triplet", "htl", "contrastive"])["losses"]

    not_all = rows["triplet"]["to_reference"]
    assert (not_all["reached"], not_all["n"], not_all["interval"]) == (2, 3, None)
    none = rows["contrastive"]["to_reference"]
    assert (none["reached"], none["n"], none["interval"]) == (0, 1, None)

    for summary, values in [
        (rows["htl"]["to_reference"], [100, 100, 200]),
        (rows["htl"]["to_own_final"], [300, 200, 400]),
        (rows["triplet"]["to_own_final"], [200, 300, 300]),
    ]:
        assert (summary["reached"], summary["n"]) == (3, 3)
        mean, half_width = three_seed_interval(values)
        assert summary["interval"]["mean"] == pytest.approx(mean)
        assert summary["interval"]["half_width"] == pytest.approx(half_width)
    # by hand: [300, 200, 400] has mean 300 and std 100
    htl_own = rows["htl"]["to_own_final"]["interval"]
    assert htl_own["mean"] == pytest.approx(300)
    assert htl_own["half_width"] == pytest.approx(T_975_DF2 * 100 / math.sqrt(3))
    assert htl_own["half_width"] == pytest.approx(248.41, abs=0.01)

    single = rows["contrastive"]["to_own_final"]
    assert single["interval"]["mean"] == 200
    assert single["interval"]["half_width"] is None


def test_losses_without_runs_or_not_asked_for_are_left_out():
    result = convergence(RUNS, ["htl", "arcface"])
    assert set(result["losses"]) == {"htl"}
    # the reference comes from the triplet runs even when triplet is not listed
    assert result["reference_level"] == pytest.approx(0.57)
    assert result["losses"]["htl"]["to_reference"]["per_seed"] == [100, 100, 200]


def test_without_triplet_runs_there_is_no_reference():
    runs = [r for r in RUNS if r["loss"] != "triplet"]
    result = convergence(runs, ["triplet", "htl", "contrastive"])
    assert result["reference"] is None
    assert result["reference_level"] is None
    assert set(result["losses"]) == {"htl", "contrastive"}
    for row in result["losses"].values():
        assert "to_reference" not in row
    assert result["losses"]["htl"]["to_own_final"]["per_seed"] == [300, 200, 400]
    assert result["resolution"] == 200


def test_reaching_exactly_the_level_counts():
    # 95% of the final R@1, met exactly at iteration 100
    exact = run("triplet", 0, 0.8, [(0, 0.1), (100, 0.95 * 0.8), (200, 0.8)])
    result = convergence([exact], ["triplet"])
    assert result["reference_level"] == 0.95 * 0.8
    row = result["losses"]["triplet"]
    assert row["to_own_final"]["per_seed"] == [100]
    assert row["to_reference"]["per_seed"] == [100]


def test_resolution_with_one_evaluation_is_none():
    result = convergence([run("htl", 0, 0.5, [(0, 0.5)])], ["htl"])
    assert result["resolution"] is None
    assert result["losses"]["htl"]["to_own_final"]["per_seed"] == [0]
    assert convergence([], ["htl"]) == {
        "fraction": 0.95,
        "reference": None,
        "reference_level": None,
        "losses": {},
        "resolution": None,
    }


# --------------------------------------------------------------------- cell
def test_cell_by_hand():
    rows = convergence(RUNS, ["triplet", "htl", "contrastive"])["losses"]
    # [300, 200, 400]: 300 +- 4.3027 * 100 / sqrt(3) = 248.4
    assert cell(rows["htl"]["to_own_final"]) == "300 ± 248"
    # [100, 100, 200]: mean 133.3, std 57.74, half width 4.3027 * 57.74 / sqrt(3) = 143.4
    assert cell(rows["htl"]["to_reference"]) == "133 ± 143"
    assert cell(rows["triplet"]["to_reference"]) == "not reached (2/3 seeds)"
    assert cell(rows["contrastive"]["to_reference"]) == "not reached (0/1 seeds)"
    assert cell(rows["contrastive"]["to_own_final"]) == "200"
    assert cell(None) == "–"
