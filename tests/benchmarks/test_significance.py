"""benchmarks/stats/significance.py on synthetic run records, against hand-computed numbers."""

import math

import pytest

import benchmarks.stats.paired
from benchmarks.stats import significance
from benchmarks.stats.significance import intervals, marks, pairwise_tests

# not imported by name: pytest would collect a module-level "tests_markdown" as a test
markdown_of = significance.tests_markdown

T_975_DF2 = 4.302652729911275  # t table, 0.975 quantile, 2 degrees of freedom
T_975_DF1 = 12.706204736174707  # t table, 0.975 quantile, 1 degree of freedom
N_QUERIES = 40
RESAMPLES = 10000  # compare_runs' default
R1, MAP = "recall_at_1", "mean_average_precision_at_r"


def record(loss, seed, r1, mapr, hits="default"):
    out = {"loss": loss, "seed": seed, "final": {R1: r1, MAP: mapr}}
    if hits == "default":
        hits = "01" * (N_QUERIES // 2)
    if hits is not None:
        out["query_hits_at_1"] = hits
    return out


# --------------------------------------------------------------- intervals
def test_intervals_by_hand():
    runs = [
        record("htl", 0, 0.60, 0.30),
        record("htl", 1, 0.62, 0.34),
        record("htl", 2, 0.64, 0.32),
        record("triplet", 0, 0.50, 0.20),
        record("triplet", 1, 0.56, 0.22),
        record("lonely", 0, 0.40, None),
    ]
    out = intervals(runs, ["htl", "triplet", "lonely", "absent"], [R1, MAP])
    assert set(out) == {"htl", "triplet", "lonely"}

    # htl R@1: mean 0.62, deviations -0.02, 0, 0.02 -> std 0.02
    htl = out["htl"][R1]
    assert htl["n"] == 3
    assert htl["mean"] == pytest.approx(0.62)
    assert htl["half_width"] == pytest.approx(T_975_DF2 * 0.02 / math.sqrt(3))
    # htl MAP@R: mean 0.32, deviations -0.02, 0.02, 0 -> std 0.02
    assert out["htl"][MAP]["mean"] == pytest.approx(0.32)
    assert out["htl"][MAP]["half_width"] == pytest.approx(T_975_DF2 * 0.02 / math.sqrt(3))
    # triplet R@1: 0.50, 0.56 -> mean 0.53, std 0.03 * sqrt(2)
    trip = out["triplet"][R1]
    assert trip["mean"] == pytest.approx(0.53)
    assert trip["half_width"] == pytest.approx(T_975_DF1 * 0.03 * math.sqrt(2) / math.sqrt(2))
    assert trip["low"] == pytest.approx(0.53 - T_975_DF1 * 0.03)
    # a metric without a value is left out; one value has no spread
    assert set(out["lonely"]) == {R1}
    assert out["lonely"][R1]["mean"] == pytest.approx(0.40)
    assert out["lonely"][R1]["half_width"] is None


def test_intervals_skip_metrics_not_recorded():
    runs = [record("htl", 0, 0.6, 0.3), record("htl", 1, 0.7, 0.5)]
    out = intervals(runs, ["htl"], [R1, "recall_at_10"])
    assert set(out["htl"]) == {R1}


# ---------------------------------------------------------- pairwise_tests
def four_losses():
    runs = []
    for seed in (0, 1, 2):
        runs.append(record("htl", seed, 0.6, 0.30 + 0.01 * seed))
        runs.append(record("triplet", seed, 0.6, 0.30 + 0.01 * seed))
    for seed in (0, 1, 3):  # seed 3 is not shared with the references
        runs.append(record("a", seed, 0.6, 0.30 + 0.01 * seed))
    runs.append(record("b", 7, 0.6, 0.3))  # no seed in common
    return runs


def test_each_pair_once_against_each_reference():
    tests = pairwise_tests(four_losses(), ["htl", "triplet", "a", "b"])
    pairs = [(t["loss"], t["against"]) for t in tests]
    assert pairs == [("triplet", "htl"), ("a", "htl"), ("a", "triplet")]
    unordered = [frozenset(p) for p in pairs]
    assert len(set(unordered)) == len(unordered)
    seeds = {(t["loss"], t["against"]): t["seeds"] for t in tests}
    assert seeds[("triplet", "htl")] == [0, 1, 2]
    assert seeds[("a", "htl")] == [0, 1]
    assert seeds[("a", "triplet")] == [0, 1]


def test_only_the_triplet_reference_when_htl_was_not_run():
    runs = [r for r in four_losses() if r["loss"] != "htl"]
    tests = pairwise_tests(runs, ["htl", "triplet", "a", "b"])
    assert [(t["loss"], t["against"]) for t in tests] == [("a", "triplet")]
    assert pairwise_tests(runs, ["a"]) == tests
    assert pairwise_tests([r for r in runs if r["loss"] != "triplet"], ["a", "b"]) == []


def test_tests_use_shared_seeds_only_with_real_statistics():
    """Hits crafted so every number is known by hand (see each comment)."""
    ones, zeros = "1" * N_QUERIES, "0" * N_QUERIES
    runs = []
    for seed in (0, 1, 2):
        runs.append(record("htl", seed, 0.5, 0.40, hits=zeros))
        runs.append(record("triplet", seed, 0.5, 0.40, hits=zeros))
    # loss a gets every query right on the shared seeds 0 and 1; seed 5 is not shared and
    # would change the MAP@R differences if it were used
    runs.append(record("a", 0, 1.0, 0.45, hits=ones))
    runs.append(record("a", 1, 1.0, 0.45, hits=ones))
    runs.append(record("a", 5, 0.0, 0.00, hits=zeros))
    tests = pairwise_tests(runs, ["htl", "triplet", "a"])
    by_pair = {(t["loss"], t["against"]): t for t in tests}
    assert list(by_pair) == [("triplet", "htl"), ("a", "htl"), ("a", "triplet")]

    # identical hits: every query's difference is 0, p = 1
    same = by_pair[("triplet", "htl")]
    assert same["seeds"] == [0, 1, 2]
    assert same[R1]["difference"] == 0.0 and same[R1]["p_value"] == 1.0
    # identical MAP@R: all differences 0, p = 1
    assert same[MAP]["p_value"] == 1.0

    for against in ("htl", "triplet"):
        t = by_pair[("a", against)]
        assert t["seeds"] == [0, 1]
        # every query +1 on both seeds: no resample <= 0, p = 2 (0 + 1) / (10000 + 1)
        assert t[R1]["difference"] == 1.0
        assert t[R1]["p_value"] == pytest.approx(2 / (RESAMPLES + 1))
        assert [m["seed"] for m in t[R1]["mcnemar_per_seed"]] == [0, 1]
        # exact McNemar with b = 40, c = 0: 2 * 0.5 ** 40
        for m in t[R1]["mcnemar_per_seed"]:
            assert (m["b"], m["c"]) == (N_QUERIES, 0)
            assert m["p_value"] == pytest.approx(2 * 0.5**N_QUERIES)
        # MAP@R differences 0.05 and 0.05 on the shared seeds: equal and nonzero, p = 0
        assert t[MAP]["difference"] == pytest.approx(0.05)
        assert t[MAP]["p_value"] == 0.0

    # Holm over the R@1 family [1, p, p] with p = 2/10001: p_holm = 3p, 2p (raised to 3p
    # by monotonicity), 1
    p = 2 / (RESAMPLES + 1)
    assert same[R1]["p_holm"] == pytest.approx(1.0)
    assert not same[R1]["significant"]
    assert by_pair[("a", "htl")][R1]["p_holm"] == pytest.approx(3 * p)
    assert by_pair[("a", "triplet")][R1]["p_holm"] == pytest.approx(3 * p)
    assert by_pair[("a", "htl")][R1]["significant"]
    # MAP@R family [1, 0, 0]: p_holm 1, 0, 0
    assert same[MAP]["p_holm"] == pytest.approx(1.0)
    assert by_pair[("a", "htl")][MAP]["p_holm"] == 0.0
    assert by_pair[("a", "triplet")][MAP]["significant"]


# Fixed p-values per (loss, against), to check Holm's family by hand.
FIXED = {
    ("triplet", "htl"): {R1: 0.01, MAP: 0.2},
    ("a", "htl"): {R1: 0.04, MAP: 0.001},
    ("a", "triplet"): {R1: 0.03, MAP: None},
    ("c", "htl"): {R1: None, MAP: 0.04},
}


@pytest.fixture
def fixed_p_values(monkeypatch):
    """stats.compare_runs replaced by fixed p-values per pair; records its calls."""
    calls = []

    def fake_compare_runs(runs_a, runs_b, **kwargs):
        (loss,) = {r["loss"] for r in runs_a}
        (against,) = {r["loss"] for r in runs_b}
        calls.append((loss, against, sorted(r["seed"] for r in runs_a)))
        p = FIXED[(loss, against)]
        return {
            "seeds": [0],
            R1: None if p[R1] is None else {"difference": 0.01, "p_value": p[R1]},
            MAP: {"difference": 0.02, "p_value": p[MAP]},
        }

    monkeypatch.setattr(benchmarks.stats.paired, "compare_runs", fake_compare_runs)
    return calls


def test_holm_per_metric_over_the_whole_family(fixed_p_values):
    # c shares a seed with htl but none with triplet: c vs triplet is skipped
    runs = [record("htl", s, 0.5, 0.3) for s in (0, 1)]
    runs += [record("triplet", 0, 0.5, 0.3), record("a", 0, 0.5, 0.3), record("c", 1, 0.5, 0.3)]
    tests = pairwise_tests(runs, ["htl", "triplet", "a", "c"])
    pairs = [(t["loss"], t["against"]) for t in tests]
    assert pairs == [("triplet", "htl"), ("a", "htl"), ("c", "htl"), ("a", "triplet")]
    by_pair = dict(zip(pairs, tests))

    # R@1 family (c has no R@1 test): 0.01, 0.04, 0.03 -> sorted 0.01 * 3 = 0.03,
    # 0.03 * 2 = 0.06, 0.04 * 1 = 0.04 raised to 0.06. Uncorrected all three are < 0.05.
    assert by_pair[("triplet", "htl")][R1]["p_holm"] == pytest.approx(0.03)
    assert by_pair[("a", "triplet")][R1]["p_holm"] == pytest.approx(0.06)
    assert by_pair[("a", "htl")][R1]["p_holm"] == pytest.approx(0.06)
    assert [by_pair[p][R1]["significant"] for p in pairs if p[0] != "c"] == [
        True,
        False,
        False,
    ]
    assert by_pair[("c", "htl")][R1] is None

    # MAP@R family (a vs triplet's p is None, left out): 0.2, 0.001, 0.04 -> sorted
    # 0.001 * 3 = 0.003, 0.04 * 2 = 0.08, 0.2 * 1 = 0.2
    assert by_pair[("a", "htl")][MAP]["p_holm"] == pytest.approx(0.003)
    assert by_pair[("c", "htl")][MAP]["p_holm"] == pytest.approx(0.08)
    assert by_pair[("triplet", "htl")][MAP]["p_holm"] == pytest.approx(0.2)
    assert by_pair[("a", "triplet")][MAP]["p_holm"] is None
    assert [by_pair[p][MAP]["significant"] for p in pairs] == [False, True, False, False]

    assert significance.marks(tests, "a", R1) == ""
    assert significance.marks(tests, "a", MAP) == "†"
    assert significance.marks(tests, "triplet", R1) == "†"
    assert significance.marks(tests, "htl", R1) == "‡"


def test_compare_runs_gets_each_loss_and_reference(fixed_p_values):
    runs = [record("htl", s, 0.5, 0.3) for s in (0, 1)]
    runs += [record("a", s, 0.5, 0.3) for s in (1, 2)]
    pairwise_tests(runs, ["a"])
    assert fixed_p_values == [("a", "htl", [1, 2])]


# ------------------------------------------------------------------- marks
def hand_test(loss, against, r1_significant, map_significant):
    return {
        "loss": loss,
        "against": against,
        R1: None if r1_significant is None else {"significant": r1_significant},
        MAP: {"significant": map_significant},
    }


def test_marks_by_hand():
    tests = [
        hand_test("triplet", "htl", True, False),
        hand_test("a", "htl", True, False),
        hand_test("a", "triplet", True, True),
        hand_test("b", "htl", False, True),
        hand_test("b", "triplet", None, False),
    ]
    assert marks(tests, "a", R1) == "†‡"
    assert marks(tests, "a", MAP) == "‡"
    assert marks(tests, "b", R1) == ""
    assert marks(tests, "b", MAP) == "†"
    # a reference's own cell carries the mark of the other reference
    assert marks(tests, "triplet", R1) == "†"
    assert marks(tests, "htl", R1) == "‡"
    assert marks(tests, "htl", MAP) == ""
    assert marks(tests, "unknown", R1) == ""
    assert marks([], "a", R1) == ""


# ---------------------------------------------------------- tests_markdown
def full_test():
    return {
        "loss": "a",
        "against": "htl",
        "seeds": [0, 1],
        R1: {
            "difference": 0.0123,
            "low": -0.01,
            "high": 0.03,
            "p_value": 0.0004,
            "p_holm": 0.0012,
            "significant": True,
            "mcnemar_per_seed": [{"seed": 0, "p_value": 0.5}, {"seed": 1, "p_value": 0.25}],
        },
        MAP: {
            "difference": -0.02,
            "low": -0.05,
            "high": 0.01,
            "cohens_dz": -1.234,
            "p_value": 0.3,
            "p_holm": 0.6,
            "significant": False,
        },
    }


def table_rows(markdown):
    lines = markdown.splitlines()
    start = lines.index("|---|---|---|---|---|---|---|---|---|---|---|")
    return lines[start + 1 :]


def test_tests_markdown_rows_by_hand():
    no_hits = {
        "loss": "triplet",
        "against": "htl",
        "seeds": [0, 1, 2],
        R1: None,
        MAP: {
            "difference": 0.005,
            "low": None,
            "high": None,
            "cohens_dz": None,
            "p_value": None,
            "p_holm": None,
            "significant": False,
        },
    }
    markdown = markdown_of([full_test(), no_hits], {"a": "Loss A", "htl": "HTL"})
    assert "## Paired tests" in markdown
    rows = table_rows(markdown)
    assert rows == [
        "| Loss A | HTL | 2 | +1.2 [-1.0, +3.0] | <0.001 | 0.001 * | 0.500, 0.250 "
        "| -2.0 [-5.0, +1.0] | -1.23 | 0.300 | 0.600 |",
        "| triplet | HTL | 3 | not recorded (no per-query hits) | – | – | – | +0.5 – | – | – | – |",
    ]
    # every row has the header's 11 cells
    for row in rows:
        assert row.count("|") == 12


def test_tests_markdown_one_row_per_test_from_pairwise_tests():
    runs = []
    for seed in (0, 1):
        runs.append(record("htl", seed, 0.6, 0.3 + 0.01 * seed))
        runs.append(record("triplet", seed, 0.6, 0.3 - 0.02 * seed, hits=None))
        runs.append(record("a", seed, 0.6, 0.31 + 0.03 * seed))
    tests = pairwise_tests(runs, ["htl", "triplet", "a"])
    rows = table_rows(markdown_of(tests, {}))
    assert len(rows) == len(tests) == 3
    assert [r.split(" | ")[:2] for r in rows] == [
        ["| triplet", "htl"],
        ["| a", "htl"],
        ["| a", "triplet"],
    ]
    # the triplet runs have no hits: their R@1 tests are not recorded, a vs htl is
    assert "not recorded" in rows[0] and "not recorded" in rows[2]
    assert "not recorded" not in rows[1]


def test_tests_markdown_empty():
    assert markdown_of([], {}) == ""


def test_runs_evaluated_without_map_at_r_are_not_tested():
    runs = [record("htl", 0, 0.8, 0.4), record("triplet", 0, 0.9, 0.5)]
    for run in runs:
        del run["final"]["mean_average_precision_at_r"]
    assert pairwise_tests(runs, ["htl", "triplet"]) == []
