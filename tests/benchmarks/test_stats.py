"""benchmarks/stats/ (intervals, paired tests, Holm) against hand-computed values and naive
exact enumerations."""

import itertools
import math

import numpy as np
import pytest

from benchmarks import stats
from benchmarks.stats import paired

# t quantile with 2 degrees of freedom in closed form: F(t) = 1/2 + t / (2 sqrt(2 + t^2)),
# so F(t) = 0.975 <=> t / sqrt(2 + t^2) = 0.95 <=> t = 0.95 sqrt(2 / (1 - 0.95^2)).
T_975_DF2 = 0.95 * math.sqrt(2.0 / (1.0 - 0.95**2))
T_975_DF3 = 3.182446305284263  # t table, 0.975 quantile, 3 degrees of freedom


# ---------------------------------------------------------------- t_interval


def test_t_interval_by_hand():
    result = stats.t_interval([1, 2, 3, 4])
    # mean 2.5; squared deviations 2.25 + 0.25 + 0.25 + 2.25 = 5, over n - 1 = 3
    std = math.sqrt(5.0 / 3.0)
    half_width = T_975_DF3 * std / math.sqrt(4)
    assert result["n"] == 4
    assert result["mean"] == pytest.approx(2.5)
    assert result["std"] == pytest.approx(std)
    assert result["half_width"] == pytest.approx(half_width)
    assert result["low"] == pytest.approx(2.5 - half_width)
    assert result["high"] == pytest.approx(2.5 + half_width)


def test_t_interval_other_confidence_with_two_degrees_of_freedom():
    # [1, 2, 4]: mean 7/3, squared deviations 16/9 + 1/9 + 25/9 = 42/9, over 2 -> 7/3.
    # 90%: F(t) = 0.95 <=> t / sqrt(2 + t^2) = 0.9.
    t_95 = 0.9 * math.sqrt(2.0 / (1.0 - 0.9**2))
    result = stats.t_interval([1, 2, 4], confidence=0.9)
    assert result["half_width"] == pytest.approx(t_95 * math.sqrt(7.0 / 3.0) / math.sqrt(3))


def test_t_interval_single_value_has_no_spread():
    result = stats.t_interval([0.7])
    assert result == {
        "n": 1,
        "mean": pytest.approx(0.7),
        "std": None,
        "half_width": None,
        "low": None,
        "high": None,
    }


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")], [float("inf"), 1.0], [[1.0, 2.0]]])
def test_t_interval_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="values"):
        stats.t_interval(bad)


@pytest.mark.parametrize("confidence", [0.0, 1.0, 95])
def test_t_interval_rejects_bad_confidence(confidence):
    with pytest.raises(ValueError, match="confidence"):
        stats.t_interval([1.0, 2.0], confidence=confidence)


# ---------------------------------------------------------------- mcnemar_test


def _hits(both: int, a_only: int, b_only: int, neither: int):
    a = [1] * both + [1] * a_only + [0] * b_only + [0] * neither
    b = [1] * both + [0] * a_only + [1] * b_only + [0] * neither
    return a, b


def test_mcnemar_by_hand():
    a, b = _hits(both=3, a_only=1, b_only=6, neither=2)
    result = stats.mcnemar_test(a, b)
    # 2 * P(Binomial(7, 1/2) <= 1) = 2 * (C(7,0) + C(7,1)) / 2^7 = 2 * 8 / 128
    assert result == {"n_queries": 12, "b": 1, "c": 6, "p_value": pytest.approx(0.125)}


def test_mcnemar_one_sided_counts():
    a, b = _hits(both=0, a_only=5, b_only=0, neither=1)
    # 2 * P(Binomial(5, 1/2) <= 0) = 2 / 32
    assert stats.mcnemar_test(a, b)["p_value"] == pytest.approx(0.0625)


@pytest.mark.parametrize("discordant", [0, 2])
def test_mcnemar_balanced_is_one(discordant):
    a, b = _hits(both=2, a_only=discordant, b_only=discordant, neither=1)
    result = stats.mcnemar_test([bool(x) for x in a], b)
    assert result["b"] == result["c"] == discordant
    assert result["p_value"] == 1.0


def test_mcnemar_rejects_bad_input():
    with pytest.raises(ValueError, match="hits_a"):
        stats.mcnemar_test([1, 0], [1, 0, 1])
    with pytest.raises(ValueError, match="hits_b"):
        stats.mcnemar_test([1, 0], [1, 2])
    with pytest.raises(ValueError, match="hits_a"):
        stats.mcnemar_test([0.5, 1], [1, 0])
    with pytest.raises(ValueError, match="hits_a"):
        stats.mcnemar_test([], [])


# ---------------------------------------------------------------- paired_bootstrap


def _exact_bootstrap(hits_a, hits_b):
    """All len(q)^len(q) resamples of query indices, each applied to every seed (naive)."""
    n_seeds, n_queries = len(hits_a), len(hits_a[0])
    values = []
    for indices in itertools.product(range(n_queries), repeat=n_queries):
        per_seed = []
        for s in range(n_seeds):
            recall_a = sum(hits_a[s][q] for q in indices) / n_queries
            recall_b = sum(hits_b[s][q] for q in indices) / n_queries
            per_seed.append(recall_a - recall_b)
        values.append(round(sum(per_seed) / n_seeds, 12))
    return values


def _exact_quantile(values, level):
    """Smallest v with P(value <= v) >= level; asserts level is not near a jump of the CDF."""
    support = sorted(set(values))
    cdf = [sum(v <= x for v in values) / len(values) for x in support]
    assert all(abs(c - level) > 0.01 for c in cdf), "Monte-Carlo quantile would be ambiguous"
    return next(x for x, c in zip(support, cdf) if c >= level)


@pytest.mark.parametrize(
    "hits_a, hits_b, confidence",
    [
        # one seed: difference [1, 0, 0]; P(boot <= 0) = 8/27, P(boot >= 0) = 1
        ([[1, 1, 0]], [[0, 1, 0]], 0.95),
        # two seeds, same resample for both: seed-summed difference [2, 0, 1]
        ([[1, 1, 0], [1, 0, 1]], [[0, 1, 0], [0, 0, 0]], 0.8),
    ],
)
@pytest.mark.parametrize("chunk_elements", [None, 1000])
def test_paired_bootstrap_matches_exact_enumeration(
    hits_a, hits_b, confidence, chunk_elements, monkeypatch
):
    if chunk_elements is not None:  # many chunks, the last one partial
        monkeypatch.setattr(paired, "_CHUNK_ELEMENTS", chunk_elements)
    exact = _exact_bootstrap(hits_a, hits_b)
    p_exact = min(
        1.0,
        2 * min(np.mean([v <= 0 for v in exact]), np.mean([v >= 0 for v in exact])),
    )
    num_resamples = 100_000
    result = stats.paired_bootstrap(
        hits_a, hits_b, num_resamples=num_resamples, seed=1, confidence=confidence
    )
    observed = np.mean([np.mean(a) - np.mean(b) for a, b in zip(hits_a, hits_b)])
    assert result["difference"] == pytest.approx(observed)
    # Monte-Carlo standard error of the p-value is at most 2 * sqrt(0.3 * 0.7 / 1e5) ~ 0.003
    assert result["p_value"] == pytest.approx(p_exact, abs=0.012)
    assert result["low"] == pytest.approx(_exact_quantile(exact, (1 - confidence) / 2))
    assert result["high"] == pytest.approx(_exact_quantile(exact, (1 + confidence) / 2))
    assert result["num_resamples"] == num_resamples
    assert result["num_seeds"] == len(hits_a)
    assert result["n_queries"] == len(hits_a[0])


def test_paired_bootstrap_exact_values_of_the_examples():
    # guards the enumeration helper itself with the values worked out by hand
    one_seed = _exact_bootstrap([[1, 1, 0]], [[0, 1, 0]])
    assert np.mean([v <= 0 for v in one_seed]) == pytest.approx(8 / 27)  # query 0 never drawn
    two_seeds = _exact_bootstrap([[1, 1, 0], [1, 0, 1]], [[0, 1, 0], [0, 0, 0]])
    assert np.mean([v <= 0 for v in two_seeds]) == pytest.approx(1 / 27)  # only (1, 1, 1)
    assert max(two_seeds) == pytest.approx(1.0)  # (0, 0, 0): (2 + 2 + 2) / (2 * 3)


def test_paired_bootstrap_equal_models():
    hits = [[1, 0, 1, 1, 0], [0, 0, 1, 1, 1]]
    result = stats.paired_bootstrap(hits, hits, num_resamples=500)
    assert result["difference"] == 0.0
    assert result["p_value"] == 1.0
    assert result["low"] == result["high"] == 0.0


def test_paired_bootstrap_strong_difference():
    rng = np.random.default_rng(5)
    hits_a = (rng.random((3, 200)) < 0.9).astype(int)
    hits_b = (rng.random((3, 200)) < 0.3).astype(int)
    num_resamples = 2000
    result = stats.paired_bootstrap(hits_a.tolist(), hits_b.tolist(), num_resamples=num_resamples)
    assert result["difference"] == pytest.approx(hits_a.mean() - hits_b.mean())
    assert 0.4 < result["low"] < result["difference"] < result["high"] < 0.8
    # no resample at or below 0: only the +1 correction remains
    assert result["p_value"] == pytest.approx(2 / (num_resamples + 1))
    # and the sign flips with the order
    flipped = stats.paired_bootstrap(hits_b.tolist(), hits_a.tolist(), num_resamples=num_resamples)
    assert flipped["difference"] == pytest.approx(-result["difference"])
    assert flipped["p_value"] == pytest.approx(result["p_value"])


def test_paired_bootstrap_resamples_queries_jointly_across_seeds():
    # seed 0: a beats b on query 0 only; seed 1: b beats a on query 0 only
    hits_a = [[1, 0, 0, 0], [0, 0, 0, 0]]
    hits_b = [[0, 0, 0, 0], [1, 0, 0, 0]]
    # resampled independently per seed the difference would spread, e.g. seed 0 drawing
    # query 0 four times (+1) and seed 1 drawing query 1 four times (0): mean +1/2
    a0 = np.mean([hits_a[0][q] for q in (0, 0, 0, 0)]) - np.mean([hits_b[0][q] for q in (0,) * 4])
    a1 = np.mean([hits_a[1][q] for q in (1, 1, 1, 1)]) - np.mean([hits_b[1][q] for q in (1,) * 4])
    assert (a0 + a1) / 2 == 0.5
    # resampled jointly, every resample cancels exactly
    result = stats.paired_bootstrap(hits_a, hits_b, num_resamples=2000)
    assert result["difference"] == 0.0
    assert result["low"] == result["high"] == 0.0
    assert result["p_value"] == 1.0


def test_paired_bootstrap_is_reproducible():
    hits_a = [[1, 0, 1, 1, 0, 1], [1, 1, 1, 0, 0, 1]]
    hits_b = [[0, 0, 1, 1, 0, 0], [1, 0, 1, 0, 1, 0]]
    first = stats.paired_bootstrap(hits_a, hits_b, num_resamples=300, seed=3)
    assert first == stats.paired_bootstrap(hits_a, hits_b, num_resamples=300, seed=3)


def test_paired_bootstrap_rejects_bad_input():
    with pytest.raises(ValueError, match="hits_a"):
        stats.paired_bootstrap([[1, 0], [1]], [[1, 0], [1, 0]])  # ragged
    with pytest.raises(ValueError, match="hits_b"):
        stats.paired_bootstrap([[1, 0]], [1, 0])  # one-dimensional
    with pytest.raises(ValueError, match="hits_a and hits_b"):
        stats.paired_bootstrap([[1, 0, 1]], [[1, 0]])
    with pytest.raises(ValueError, match="hits_a and hits_b"):
        stats.paired_bootstrap([[1, 0], [0, 1]], [[1, 0]])
    with pytest.raises(ValueError, match="hits_b"):
        stats.paired_bootstrap([[1, 0]], [[1, 3]])
    with pytest.raises(ValueError, match="num_resamples"):
        stats.paired_bootstrap([[1, 0]], [[0, 1]], num_resamples=0)


# ---------------------------------------------------------------- paired_t_test


def test_paired_t_test_by_hand():
    result = stats.paired_t_test([0.80, 0.82, 0.85], [0.78, 0.81, 0.80])
    # differences [0.02, 0.01, 0.05] = [2, 1, 5] / 100; mean 8/300
    mean = 8.0 / 300.0
    # deviations [-2/3, -5/3, 7/3] / 100: squares sum to 78/9 / 100^2, over n - 1 = 2
    sd = math.sqrt(13.0 / 3.0) / 100.0
    t = mean / (sd / math.sqrt(3))  # = 8 / sqrt(13)
    assert t == pytest.approx(8 / math.sqrt(13))
    # two degrees of freedom: two-sided p = 1 - t / sqrt(2 + t^2)
    p = 1.0 - t / math.sqrt(2.0 + t**2)
    assert result["n"] == 3
    assert result["difference"] == pytest.approx(mean)
    assert result["p_value"] == pytest.approx(p)
    assert result["cohens_dz"] == pytest.approx(mean / sd)  # = 8 / sqrt(39)
    half_width = T_975_DF2 * sd / math.sqrt(3)
    assert result["low"] == pytest.approx(mean - half_width)
    assert result["high"] == pytest.approx(mean + half_width)


def test_paired_t_test_one_degree_of_freedom():
    # differences [0.1, 0.05]: mean 0.075, sd 0.05 / sqrt(2), t = 0.075 / 0.025 = 3;
    # one degree of freedom (Cauchy): two-sided p = 1 - (2 / pi) * atan(3)
    result = stats.paired_t_test([0.5, 0.6], [0.4, 0.55])
    assert result["p_value"] == pytest.approx(1.0 - 2.0 / math.pi * math.atan(3.0))


def test_paired_t_test_single_pair():
    assert stats.paired_t_test([0.9], [0.8]) == {
        "n": 1,
        "difference": pytest.approx(0.1),
        "low": None,
        "high": None,
        "p_value": None,
        "cohens_dz": None,
    }


def test_paired_t_test_no_spread():
    same = stats.paired_t_test([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    assert same["p_value"] == 1.0
    assert same["cohens_dz"] == 0.0
    assert same["low"] == same["high"] == same["difference"] == 0.0
    shifted = stats.paired_t_test([2.0, 3.0, 4.0], [1.0, 2.0, 3.0])  # differences exactly 1
    assert shifted["p_value"] == 0.0
    assert shifted["cohens_dz"] is None
    assert shifted["low"] == shifted["high"] == shifted["difference"] == 1.0


def test_paired_t_test_rejects_bad_input():
    with pytest.raises(ValueError, match="values_b"):
        stats.paired_t_test([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="values_a"):
        stats.paired_t_test([1.0, float("nan")], [1.0, 2.0])
    with pytest.raises(ValueError, match="values_a"):
        stats.paired_t_test([], [])


# ---------------------------------------------------------------- holm


def test_holm_by_hand():
    result = stats.holm([0.01, 0.04, 0.03, 0.005], alpha=0.05)
    # sorted: 0.005 * 4 = 0.02, 0.01 * 3 = 0.03, 0.03 * 2 = 0.06, max(0.06, 0.04 * 1) = 0.06
    assert [r["p_value"] for r in result] == [0.01, 0.04, 0.03, 0.005]
    assert [r["p_holm"] for r in result] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert [r["significant"] for r in result] == [True, False, False, True]


def test_holm_leaves_none_out_of_the_family():
    result = stats.holm([0.02, None, 0.04])
    # family of two: 0.02 * 2 = 0.04, max(0.04, 0.04 * 1) = 0.04 -> both significant
    # (in a family of three 0.02 * 3 = 0.06 would not be)
    assert result[1] == {"p_value": None, "p_holm": None, "significant": False}
    assert [result[0]["p_holm"], result[2]["p_holm"]] == pytest.approx([0.04, 0.04])
    assert result[0]["significant"] and result[2]["significant"]


def test_holm_caps_at_one_and_handles_an_empty_family():
    assert stats.holm([0.6, 0.7])[0]["p_holm"] == 1.0
    assert stats.holm([None]) == [{"p_value": None, "p_holm": None, "significant": False}]
    assert stats.holm([]) == []


@pytest.mark.parametrize("bad", [[0.1, 1.5], [float("nan")], [-0.1], ["x"]])
def test_holm_rejects_bad_p_values(bad):
    with pytest.raises(ValueError, match="p_values"):
        stats.holm(bad)


# ---------------------------------------------------------------- compare_runs


def _run(seed, map_at_r, hits=None):
    run = {"seed": seed, "final": {"recall_at_1": 0.5, "mean_average_precision_at_r": map_at_r}}
    if hits is not None:
        run["query_hits_at_1"] = hits
    return run


def test_compare_runs_pairs_by_seed():
    runs_a = [_run(2, 0.6, "1110"), _run(0, 0.9, "1111"), _run(1, 0.5, "1100")]
    runs_b = [_run(1, 0.4, "1010"), _run(3, 0.1, "0000"), _run(2, 0.55, "0110")]
    result = stats.compare_runs(runs_a, runs_b, num_resamples=500)
    assert result["seeds"] == [1, 2]
    # mAP@R differences [0.1, 0.05] (seeds 1, 2): see test_paired_t_test_one_degree_of_freedom
    mean_ap = result["mean_average_precision_at_r"]
    assert mean_ap["n"] == 2
    assert mean_ap["difference"] == pytest.approx(0.075)
    assert mean_ap["p_value"] == pytest.approx(1.0 - 2.0 / math.pi * math.atan(3.0))
    # R@1: seed 1 differences [0, 1, -1, 0] (mean 0), seed 2 [1, 0, 0, 0] (mean 1/4)
    recall = result["recall_at_1"]
    assert recall["difference"] == pytest.approx(0.125)
    assert recall["num_seeds"] == 2 and recall["n_queries"] == 4
    assert recall["num_resamples"] == 500
    assert [(m["seed"], m["b"], m["c"]) for m in recall["mcnemar_per_seed"]] == [
        (1, 1, 1),
        (2, 1, 0),
    ]
    assert [m["p_value"] for m in recall["mcnemar_per_seed"]] == [1.0, 1.0]


def test_compare_runs_without_hits():
    runs_a = [_run(0, 0.5, "10"), _run(1, 0.6, "11")]
    runs_b = [_run(0, 0.4, "00"), _run(1, 0.3)]  # an old run without hits
    result = stats.compare_runs(runs_a, runs_b)
    assert result["seeds"] == [0, 1]
    assert result["recall_at_1"] is None
    assert result["mean_average_precision_at_r"]["difference"] == pytest.approx(0.2)


def test_compare_runs_ignores_hits_of_unpaired_seeds():
    runs_a = [_run(0, 0.5, "10"), _run(1, 0.6)]  # seed 1 has no partner
    runs_b = [_run(0, 0.4, "00")]
    result = stats.compare_runs(runs_a, runs_b, num_resamples=200)
    assert result["seeds"] == [0]
    assert result["recall_at_1"]["difference"] == pytest.approx(0.5)
    assert result["mean_average_precision_at_r"]["p_value"] is None


def test_compare_runs_rejects_bad_input():
    with pytest.raises(ValueError, match="same length"):
        stats.compare_runs([_run(0, 0.5, "101")], [_run(0, 0.4, "10")])
    with pytest.raises(ValueError, match="runs_a"):
        stats.compare_runs([_run(0, 0.5, "1x1")], [_run(0, 0.4, "101")])
    with pytest.raises(ValueError, match="runs_b"):
        stats.compare_runs([_run(0, 0.5)], [_run(0, 0.4), _run(0, 0.3)])  # seed 0 twice
    with pytest.raises(ValueError, match="share no seed"):
        stats.compare_runs([_run(0, 0.5)], [_run(1, 0.4)])
