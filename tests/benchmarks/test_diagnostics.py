"""benchmarks/diagnostics.py against naive loops over the triplets of each batch.

The reference reads only the tree's own lookups (margin terms, class distances, d0 from
the raw samples) and recomputes every alpha, distance, hinge and summary by hand.
"""

import math

import numpy as np
import pytest
import torch
from helpers import RefTree

from benchmarks.diagnostics import MarginDiagnostics, describe, summarise
from pml_htl import HierarchicalClassTree, losses

BETA = 0.2
LAMBDA = 0.7
NUM_CLASSES = 6
DIM = 8


# ------------------------------------------------------------------ data
def _centres():
    g = torch.Generator().manual_seed(0)
    return torch.randn(NUM_CLASSES, DIM, generator=g, dtype=torch.float64)


def _tree_data():
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(NUM_CLASSES).repeat_interleave(7)
    emb = _centres().repeat_interleave(7, 0) + 0.8 * torch.randn(
        NUM_CLASSES * 7, DIM, generator=g, dtype=torch.float64
    )
    return emb, labels


@pytest.fixture(scope="module")
def tree_and_data():
    emb, labels = _tree_data()
    return HierarchicalClassTree.from_embeddings(emb, labels), emb, labels


def _batch(labels, seed, noise=0.9):
    g = torch.Generator().manual_seed(seed)
    labels = torch.tensor(labels, dtype=torch.long)
    x = _centres()[labels] + noise * torch.randn(len(labels), DIM, generator=g, dtype=torch.float64)
    return x.float().requires_grad_(True), labels


# class 0 appears once in the second batch: a negative only, never an anchor with a positive
BATCH_1 = [0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 3]
BATCH_2 = [4, 4, 5, 5, 5, 0, 1, 1, 2, 3]


def _batches():
    return [_batch(BATCH_1, seed=10), _batch(BATCH_2, seed=11)]


# ------------------------------------------------------------- references
def naive_near(tree, m):
    """{class: set of the class's m - 1 nearest classes by tree.class_distance}."""
    classes = tree.labels.tolist()
    near = {}
    for p in classes:
        dists = []
        for q in classes:
            if q != p:
                d = float(tree.class_distance(torch.tensor([p]), torch.tensor([q]))[0])
                dists.append((d, q))
        dists.sort()
        # no ties in these data (the order of the nearest classes is well defined)
        for (d1, _), (d2, _) in zip(dists, dists[1:]):
            assert d2 - d1 > 1e-9
        near[p] = {q for _, q in dists[: max(0, min(m - 1, len(classes) - 1))]}
    return near


def naive_alpha(tree, ya, yn):
    a, n = torch.tensor([ya]), torch.tensor([yn])
    return BETA + LAMBDA * (float(tree.merge_distance(a, n)[0]) - float(tree.spread(a)[0]))


def naive_quantile(values, q):
    """Linear interpolation between the order statistics at position q (n - 1)."""
    v = sorted(values)
    pos = q * (len(v) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (pos - lo) * (v[hi] - v[lo])


def naive_summary(values):
    if not values:
        return None
    return {
        "count": len(values),
        "mean": sum(values) / len(values),
        "p10": naive_quantile(values, 0.1),
        "p50": naive_quantile(values, 0.5),
        "p90": naive_quantile(values, 0.9),
    }


def naive_period(tree, batches, m):
    """Every number finish() writes, by loops over each batch's triplets."""
    near = naive_near(tree, m)
    alpha_near, alpha_far = [], []
    triplets = active = 0
    hinge_total = hinge_far = 0.0
    closest_to_zero = math.inf
    for emb, labels in batches:
        x = emb.detach().double().numpy()
        x = x / np.sqrt((x**2).sum(1, keepdims=True))
        y = labels.tolist()
        B = len(y)

        def D(i, j):
            return float(((x[i] - x[j]) ** 2).sum())

        for a in range(B):
            for p in range(B):
                if p == a or y[p] != y[a]:
                    continue
                for n in range(B):
                    if y[n] == y[a]:
                        continue
                    value = D(a, p) - D(a, n) + naive_alpha(tree, y[a], y[n])
                    closest_to_zero = min(closest_to_zero, abs(value))
                    hinge = max(0.0, value)
                    triplets += 1
                    active += hinge > 0
                    hinge_total += hinge
                    if y[n] not in near[y[a]]:
                        hinge_far += hinge
        classes = sorted(set(y))
        for ca in classes:
            for cn in classes:
                if ca != cn:
                    target = alpha_near if cn in near[ca] else alpha_far
                    target.append(naive_alpha(tree, ca, cn))
    # float32 distances in the code: no hinge this close to 0 may flip sides
    assert closest_to_zero > 1e-4
    return {
        "alpha_near": naive_summary(alpha_near),
        "alpha_far": naive_summary(alpha_far),
        "triplets": triplets,
        "active_fraction": active / triplets if triplets else None,
        "far_hinge_share": hinge_far / hinge_total if hinge_total else None,
    }


def assert_period(entry, expected, rel=1e-5):
    for key in ("alpha_near", "alpha_far"):
        if expected[key] is None:
            assert entry[key] is None, key
            continue
        assert entry[key]["count"] == expected[key]["count"], key
        assert set(entry[key]) == {"count", "mean", "p10", "p50", "p90"}
        for stat in ("mean", "p10", "p50", "p90"):
            assert entry[key][stat] == pytest.approx(expected[key][stat], rel=rel), (key, stat)
    assert entry["triplets"] == expected["triplets"]
    for key in ("active_fraction", "far_hinge_share"):
        if expected[key] is None:
            assert entry[key] is None, key
        else:
            assert entry[key] == pytest.approx(expected[key], rel=rel, abs=1e-7), key


def make_loss(tree):
    return losses.HierarchicalTripletLoss(tree=tree, beta=BETA, margin_scale=LAMBDA)


def forward(loss, batch):
    emb, labels = batch
    out = loss(emb, labels)
    out.backward()
    return out


def period_over_both_batches(tree, m, iteration=0):
    """A fresh loss with diagnostics (m classes per anchor), one period started at
    ``iteration`` and both batches forwarded in training mode."""
    loss = make_loss(tree)
    diagnostics = MarginDiagnostics(loss, classes_per_anchor=m)
    diagnostics.start(tree, iteration)
    batches = _batches()
    for batch in batches:
        forward(loss, batch)
    return diagnostics, batches


# ------------------------------------------------------------------ summarise
def test_summarise_by_hand():
    s = summarise(np.array([4.0, 1.0, 3.0, 2.0]))
    # sorted 1 2 3 4: position q * 3 -> p10 at 0.3, p50 at 1.5, p90 at 2.7
    assert s == pytest.approx({"count": 4, "mean": 2.5, "p10": 1.3, "p50": 2.5, "p90": 3.7})
    assert isinstance(s["count"], int)
    assert summarise(np.array([0.25])) == {
        "count": 1,
        "mean": 0.25,
        "p10": 0.25,
        "p50": 0.25,
        "p90": 0.25,
    }
    assert summarise(np.zeros(0)) is None


# --------------------------------------------------------------- the periods
def test_test_data_mix_near_and_far_and_active_and_easy(tree_and_data):
    """The data exercise every branch: near and far pairs, active and easy triplets."""
    tree, _, _ = tree_and_data
    expected = naive_period(tree, _batches(), m=3)
    assert expected["alpha_near"]["count"] > 0 and expected["alpha_far"]["count"] > 0
    assert 0.1 < expected["active_fraction"] < 0.9
    assert 0.0 < expected["far_hinge_share"] < 1.0


@pytest.mark.parametrize("m", [3, 4])
def test_period_matches_naive_loops(tree_and_data, m):
    tree, emb, labels = tree_and_data
    diagnostics, batches = period_over_both_batches(tree, m, iteration=30)
    entry = diagnostics.finish()
    assert entry is diagnostics.entries[-1]
    assert len(diagnostics.entries) == 1
    assert entry["iteration"] == 30
    assert entry["num_classes"] == NUM_CLASSES
    assert entry["beta"] == pytest.approx(BETA)
    assert entry["margin_scale"] == pytest.approx(LAMBDA)
    assert entry["d0"] == pytest.approx(RefTree(emb.numpy(), labels.numpy(), 16).d0, rel=1e-9)
    assert_period(entry, naive_period(tree, batches, m))
    # the triplet count by hand: batch 1 has classes of 3, 3, 2, 4 samples in 12,
    # batch 2 of 2, 3, 1, 2, 1 in 10 (class 0's single sample has no positive)
    by_hand = 3 * 2 * 9 + 3 * 2 * 9 + 2 * 1 * 10 + 4 * 3 * 8
    by_hand += 2 * 1 * 8 + 3 * 2 * 7 + 2 * 1 * 8
    assert entry["triplets"] == by_hand
    # distinct ordered class pairs: 4 * 3 in batch 1, 6 * 5 in batch 2
    assert entry["alpha_near"]["count"] + entry["alpha_far"]["count"] == 4 * 3 + 6 * 5
    # a second finish() leaves the entry as it is
    assert diagnostics.finish() is None
    assert_period(diagnostics.entries[-1], naive_period(tree, batches, m))


def test_every_class_near_when_m_exceeds_the_classes(tree_and_data):
    """m - 1 >= C - 1: every other class is near, so nothing is far."""
    tree, _, _ = tree_and_data
    diagnostics, batches = period_over_both_batches(tree, NUM_CLASSES + 4)
    entry = diagnostics.finish()
    expected = naive_period(tree, batches, NUM_CLASSES + 4)
    assert expected["alpha_far"] is None and expected["far_hinge_share"] == 0.0
    assert_period(entry, expected)
    assert entry["alpha_far"] is None
    assert entry["far_hinge_share"] == 0.0


def test_no_class_near_when_m_is_one(tree_and_data):
    tree, _, _ = tree_and_data
    diagnostics, batches = period_over_both_batches(tree, 1)
    entry = diagnostics.finish()
    assert entry["alpha_near"] is None
    assert entry["far_hinge_share"] == pytest.approx(1.0)
    assert_period(entry, naive_period(tree, batches, 1))


def test_eval_mode_forwards_are_ignored(tree_and_data):
    tree, _, _ = tree_and_data
    loss = make_loss(tree)
    diagnostics = MarginDiagnostics(loss, classes_per_anchor=3)
    diagnostics.start(tree, 0)
    b1, b2 = _batches()
    loss.eval()
    loss(*b1)
    loss.train()
    forward(loss, b2)
    assert_period(diagnostics.finish(), naive_period(tree, [b2], 3))


def test_period_with_only_eval_forwards_is_empty(tree_and_data):
    tree, _, _ = tree_and_data
    loss = make_loss(tree)
    diagnostics = MarginDiagnostics(loss, classes_per_anchor=3)
    diagnostics.start(tree, 0)
    loss.eval()
    for batch in _batches():
        loss(*batch)
    entry = diagnostics.finish()
    assert entry["triplets"] == 0
    assert entry["alpha_near"] is None and entry["alpha_far"] is None
    assert entry["active_fraction"] is None and entry["far_hinge_share"] is None


def test_forward_before_start_is_ignored(tree_and_data):
    tree, _, _ = tree_and_data
    loss = make_loss(tree)
    diagnostics = MarginDiagnostics(loss, classes_per_anchor=3)
    b1, b2 = _batches()
    forward(loss, b1)
    assert diagnostics.finish() is None  # no period open
    assert diagnostics.entries == []
    diagnostics.start(tree, 0)
    forward(loss, b2)
    assert_period(diagnostics.finish(), naive_period(tree, [b2], 3))


def test_second_start_closes_the_previous_period(tree_and_data):
    tree, _, _ = tree_and_data
    loss = make_loss(tree)
    diagnostics = MarginDiagnostics(loss, classes_per_anchor=3)
    b1, b2 = _batches()
    diagnostics.start(tree, 0)
    forward(loss, b1)
    forward(loss, b1)
    diagnostics.start(tree, 50)
    assert "active_fraction" in diagnostics.entries[0]
    assert "active_fraction" not in diagnostics.entries[1]
    forward(loss, b2)
    entries = diagnostics.close()
    assert entries is diagnostics.entries
    assert [e["iteration"] for e in entries] == [0, 50]
    assert_period(entries[0], naive_period(tree, [b1, b1], 3))
    assert_period(entries[1], naive_period(tree, [b2], 3))
    # the same batch twice: every class pair is counted once per batch, so twice
    single = naive_period(tree, [b1], 3)
    assert entries[0]["triplets"] == 2 * single["triplets"]
    assert entries[0]["alpha_near"]["count"] == 2 * single["alpha_near"]["count"]


def test_close_removes_the_hook(tree_and_data):
    tree, _, _ = tree_and_data
    loss = make_loss(tree)
    diagnostics = MarginDiagnostics(loss, classes_per_anchor=3)
    assert len(loss._forward_hooks) == 1
    b1, b2 = _batches()
    diagnostics.start(tree, 0)
    forward(loss, b1)
    entries = diagnostics.close()
    assert len(loss._forward_hooks) == 0
    snapshot = [dict(e) for e in entries]
    forward(loss, b2)
    diagnostics.start(tree, 7)  # a new period gets no forward after close()
    forward(loss, b2)
    diagnostics.finish()
    assert diagnostics.entries[:1] == snapshot
    assert_period(diagnostics.entries[0], naive_period(tree, [b1], 3))
    assert diagnostics.entries[1]["triplets"] == 0


def test_forwards_between_finish_and_start_do_not_leak_into_the_next_period(tree_and_data):
    tree, _, _ = tree_and_data
    loss = make_loss(tree)
    diagnostics = MarginDiagnostics(loss, classes_per_anchor=3)
    b1, b2 = _batches()
    diagnostics.start(tree, 0)
    forward(loss, b1)
    diagnostics.finish()
    forward(loss, b2)  # no period is open: it belongs to no tree's period
    diagnostics.start(tree, 10)
    forward(loss, b1)
    diagnostics.finish()
    assert_period(diagnostics.entries[0], naive_period(tree, [b1], 3))
    assert_period(diagnostics.entries[1], naive_period(tree, [b1], 3))


def test_the_hook_leaves_the_loss_loggable_by_record_keeper(tree_and_data):
    """PML's record-keeper logs every dict attribute of a loss: the hook must not add
    one with non-string keys (a forward hook with kwargs does)."""
    tree, _, _ = tree_and_data
    loss = make_loss(tree)
    MarginDiagnostics(loss, classes_per_anchor=3)
    assert not loss._forward_hooks_with_kwargs


# ------------------------------------------------------------------ describe
def test_describe_by_hand():
    entry = {
        "iteration": 40,
        "d0": 0.51234,
        "alpha_near": {"count": 3, "mean": 0.4, "p10": 0.3, "p50": 0.456, "p90": 0.5},
        "alpha_far": None,
        "active_fraction": 0.374,
        "far_hinge_share": 0.5,
    }
    assert describe(entry) == (
        "tree at iteration 40: d0 0.512, median alpha near 0.46 / far -, "
        "active triplets 37%, far negatives' share of the hinge 50%"
    )
    empty = dict(entry, alpha_near=None, active_fraction=None, far_hinge_share=None)
    assert describe(empty) == (
        "tree at iteration 40: d0 0.512, median alpha near - / far -, "
        "active triplets -, far negatives' share of the hinge -"
    )


def test_describe_of_a_finished_period(tree_and_data):
    tree, emb, labels = tree_and_data
    diagnostics, batches = period_over_both_batches(tree, 3, iteration=12)
    line = describe(diagnostics.close()[-1])
    expected = naive_period(tree, batches, 3)
    d0 = RefTree(emb.numpy(), labels.numpy(), 16).d0
    assert "\n" not in line
    assert line.startswith("tree at iteration 12: ")
    assert f"d0 {d0:.3f}" in line
    assert f"median alpha near {expected['alpha_near']['p50']:.2f}" in line
    assert f"/ far {expected['alpha_far']['p50']:.2f}" in line
    assert f"active triplets {100 * expected['active_fraction']:.0f}%" in line
    assert f"share of the hinge {100 * expected['far_hinge_share']:.0f}%" in line


# ------------------------------------------------------------- hinge argument per class pair
def naive_pair_arguments(tree, batches):
    """{(anchor class, negative class): (mean hinge argument over the pair's triplets,
    d - s_a, s_a - d + alpha)} by loops over the triplets of the batches."""
    sums, counts = {}, {}
    for emb, labels in batches:
        x = emb.detach().double().numpy()
        x = x / np.sqrt((x**2).sum(1, keepdims=True))
        y = labels.tolist()
        for a in range(len(y)):
            for p in range(len(y)):
                if p == a or y[p] != y[a]:
                    continue
                for n in range(len(y)):
                    if y[n] == y[a]:
                        continue
                    value = ((x[a] - x[p]) ** 2).sum() - ((x[a] - x[n]) ** 2).sum()
                    value += naive_alpha(tree, y[a], y[n])
                    key = (y[a], y[n])
                    sums[key] = sums.get(key, 0.0) + value
                    counts[key] = counts.get(key, 0) + 1
    out = {}
    for (ca, cn), total in sums.items():
        a, n = torch.tensor([ca]), torch.tensor([cn])
        d = float(tree.class_distance(a, n)[0])
        s = float(tree.spread(a)[0])
        out[(ca, cn)] = (total / counts[(ca, cn)], d - s, s - d + naive_alpha(tree, ca, cn))
    return out


def test_hinge_argument_per_class_pair_matches_naive_loops(tree_and_data):
    tree = tree_and_data[0]
    diagnostics, batches = period_over_both_batches(tree, 3)
    got = diagnostics.finish()["hinge_argument"]
    pairs = naive_pair_arguments(tree, batches)
    mean, separation, expected = (np.array(v) for v in zip(*pairs.values()))
    assert got["pairs"] == len(pairs)
    slope, intercept = np.polyfit(separation, mean, 1)
    assert got["slope"] == pytest.approx(slope, rel=1e-4)
    assert got["intercept"] == pytest.approx(intercept, rel=1e-4, abs=1e-6)
    assert got["positive_pairs"] == pytest.approx((mean > 0).mean())
    assert got["mean"] == pytest.approx(mean.mean(), rel=1e-5)
    fit = np.polyfit(expected, mean, 1)
    assert got["against_expected"]["slope"] == pytest.approx(fit[0], rel=1e-4)
    assert got["predicted_slope"] == pytest.approx(-(1 - LAMBDA))
    assert got["expected"]["slope"] == pytest.approx(
        np.polyfit(separation, expected, 1)[0], rel=1e-4
    )
    assert sum(b["pairs"] for b in got["bins"]) >= len(pairs)  # bin edges may share a pair
