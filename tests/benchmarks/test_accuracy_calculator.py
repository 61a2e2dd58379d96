"""Recall@K of benchmarks.evaluation.accuracy against hand-computed examples."""

import math
import sys

import numpy as np
import pytest
import torch
from pytorch_metric_learning.distances import CosineSimilarity, LpDistance
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import CustomKNN

from benchmarks.evaluation.accuracy import (
    RecallAtKAccuracyCalculator,
    faiss_available,
    make_accuracy_calculator,
)

CPU = torch.device("cpu")
RECALLS = ("recall_at_1", "recall_at_2", "recall_at_4", "recall_at_8")


def _unit(deg):
    r = math.radians(deg)
    return (math.cos(r), math.sin(r))


def circle_example():
    """14 points on the unit circle, query = reference.

    On the circle, L2 distance and cosine similarity rank neighbours the same
    way (by angle). Mirror images are built coordinate by coordinate, so the
    ties below are exact in float32 for faiss (L2) and torch (cosine) alike.

        point angle class    point angle class
        P0      0   A        P7     90   G
        P1     20   B        P8     65   G
        P2    340   B        P9    115   H
        P3     50   A        P10   215   E  (E has one sample: a lone query)
        P4    180   D        P11   135   H
        P5    160   D        P12   270   K
        P6    200   D        P13   150   K

    Neighbours by angle (the query itself excluded); "rank" is the rank of
    the first neighbour of the same class:

        P0  A: P1 B 20 = P2 B 20 (tie, both misses), P3 A 50      rank 3
        P1  B: P0 A 20, P3 A 30, P2 B 40                           rank 3
        P2  B: P0 A 20, P1 B 40                                    rank 2
        P3  A: P8 G 15, P1 B 30, P7 G 40, P0 A 50                  rank 4
        P4  D: P5 D 20 = P6 D 20 (tie, both hits)                  rank 1
        P5  D: P13 K 10, P4 D 20                                   rank 2
        P6  D: P10 E 15 (the lone sample is a neighbour), P4 D 20  rank 2
        P7  G: P8 G 25 = P9 H 25 (tie, hit and miss)               rank 1 or 2
        P8  G: P3 A 15, P7 G 25                                    rank 2
        P9  H: P11 H 20                                            rank 1
        P10 E: no other E: left out (PML's rule for lone queries)
        P11 H: P13 K 15, P9 H 20                                   rank 2
        P12 K: P10 E 55, P2 B 70 = P6 D 70, P0 A 90 = P4 D 90,
               P1 B 110 = P5 D 110, P13 K 120                      rank 8
        P13 K: P5, P11, P4, P9, P6, P7, P10, P8, P3 (<= 100), P12 K 120
                                                                   rank 10

    13 queries count. Hits: R@1 = {P4, P9} (+ P7 depending on the tie
    break) -> 2/13 or 3/13; R@2 = 8/13; R@4 = 11/13; R@8 = 12/13.
    """
    c, s = _unit(20)
    s25, c25 = math.sin(math.radians(25)), math.cos(math.radians(25))
    points = [
        (1.0, 0.0),  # P0
        (c, s),  # P1
        (c, -s),  # P2
        _unit(50),  # P3
        (-1.0, 0.0),  # P4
        (-c, s),  # P5
        (-c, -s),  # P6
        (0.0, 1.0),  # P7
        (s25, c25),  # P8
        (-s25, c25),  # P9
        _unit(215),  # P10
        _unit(135),  # P11
        (0.0, -1.0),  # P12
        _unit(150),  # P13
    ]
    labels = [0, 1, 1, 0, 3, 3, 3, 6, 6, 7, 4, 7, 10, 10]
    return torch.tensor(points, dtype=torch.float32), torch.tensor(labels)


EXPECTED = {"recall_at_2": 8 / 13, "recall_at_4": 11 / 13, "recall_at_8": 12 / 13}
R1_CHOICES = (2 / 13, 3 / 13)


def _check_circle(result):
    for name, value in EXPECTED.items():
        assert result[name] == pytest.approx(value), name
    assert min(abs(result["recall_at_1"] - v) for v in R1_CHOICES) < 1e-12
    assert result["recall_at_1"] == result["precision_at_1"]


def _calculators():
    yield (
        "torch-L2",
        RecallAtKAccuracyCalculator(
            device=CPU,
            exclude=("NMI", "AMI"),
            knn_func=CustomKNN(LpDistance(normalize_embeddings=False)),
        ),
    )
    yield (
        "torch-cosine",
        RecallAtKAccuracyCalculator(
            device=CPU, exclude=("NMI", "AMI"), knn_func=CustomKNN(CosineSimilarity())
        ),
    )
    if faiss_available():
        yield "faiss", RecallAtKAccuracyCalculator(device=CPU, exclude=("NMI", "AMI"))


@pytest.mark.parametrize("name", ["torch-L2", "torch-cosine", "faiss"])
def test_hand_computed_circle(name):
    calcs = dict(_calculators())
    if name not in calcs:
        pytest.skip("faiss is not installed")
    x, y = circle_example()
    _check_circle(calcs[name].get_accuracy(x, y))


def test_r1_equals_precision_at_1_on_random_data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 16, generator=g)
    y = torch.randint(0, 40, (300,), generator=g)
    for _, calc in _calculators():
        r = calc.get_accuracy(x, y)
        assert r["recall_at_1"] == r["precision_at_1"]
        assert r["recall_at_1"] <= r["recall_at_2"] <= r["recall_at_4"] <= r["recall_at_8"]


def test_against_brute_force():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(120, 5, generator=g)
    y = torch.randint(0, 25, (120,), generator=g)
    d = torch.cdist(x.double(), x.double())
    d.fill_diagonal_(float("inf"))
    order = d.argsort(dim=1)
    same = y[order] == y[:, None]
    counts = torch.bincount(y)
    not_lone = counts[y] > 1
    calc = RecallAtKAccuracyCalculator(
        recall_at_ks=(1, 3, 10, 50),
        device=CPU,
        include=("recall_at_1", "recall_at_3", "recall_at_10", "recall_at_50"),
        knn_func=CustomKNN(LpDistance(normalize_embeddings=False)),
    )
    r = calc.get_accuracy(x, y)
    for K in (1, 3, 10, 50):
        want = same[not_lone, :K].any(dim=1).double().mean().item()
        assert r[f"recall_at_{K}"] == pytest.approx(want)


def test_query_against_separate_reference():
    # Reference: A at 0 deg, C at 10 deg, B at 40 deg.
    ref = torch.tensor([_unit(0), _unit(10), _unit(40)], dtype=torch.float32)
    ref_labels = torch.tensor([0, 2, 1])
    # Queries: A at 2 deg (nearest A: hit at 1); B at 12 deg (C at 2 deg,
    # then A at 12 deg, then B at 28 deg: hit at rank 3); Z (absent from the
    # reference: lone, left out).
    q = torch.tensor([_unit(2), _unit(12), _unit(200)], dtype=torch.float32)
    q_labels = torch.tensor([0, 1, 9])
    for _, calc in _calculators():
        r = calc.get_accuracy(q, q_labels, ref, ref_labels)
        assert r["recall_at_1"] == pytest.approx(1 / 2)
        assert r["recall_at_2"] == pytest.approx(1 / 2)
        assert r["recall_at_4"] == pytest.approx(1.0)  # K > 3 references
        assert r["recall_at_1"] == r["precision_at_1"]


def test_pml_metrics_unchanged_and_k_raised():
    """k="max_bin_count" is 2 here; Recall@8 needs 8 neighbours, but PML's
    own metrics still see the neighbours PML would give them."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(90, 6, generator=g)
    y = torch.arange(30).repeat_interleave(3)
    seen = []

    class SpyKNN(CustomKNN):
        def __call__(self, query, k, reference, ref_includes_query=False):
            seen.append(k)
            return super().__call__(query, k, reference, ref_includes_query)

    knn = SpyKNN(LpDistance(normalize_embeddings=False))
    ours = RecallAtKAccuracyCalculator(device=CPU, exclude=("NMI", "AMI"), knn_func=knn)
    pml = AccuracyCalculator(device=CPU, exclude=("NMI", "AMI"), k="max_bin_count", knn_func=knn)
    a, b = ours.get_accuracy(x, y), pml.get_accuracy(x, y)
    assert seen == [8, 2]
    for name, value in b.items():
        assert a[name] == value, name
    assert set(a) == set(b) | set(RECALLS)


def test_k_too_small_raises_and_valid_ks():
    with pytest.raises(ValueError, match=r"\bk=4\b"):
        RecallAtKAccuracyCalculator(k=4, device=CPU)
    RecallAtKAccuracyCalculator(k=8, device=CPU)
    RecallAtKAccuracyCalculator(k=None, device=CPU)
    RecallAtKAccuracyCalculator(k=4, recall_at_ks=(1, 2, 4), device=CPU)
    # Recall@8 not computed: k=4 is enough.
    RecallAtKAccuracyCalculator(k=4, exclude=("recall_at_8",), device=CPU)
    for bad in [(), (0,), (1, -2), ("1",), (1.5,)]:
        with pytest.raises(ValueError, match="recall_at_ks"):
            RecallAtKAccuracyCalculator(recall_at_ks=bad, device=CPU)
    calc = RecallAtKAccuracyCalculator(recall_at_ks=(10, 1, 100), device=CPU)
    assert [m for m in calc.get_curr_metrics() if m.startswith("recall")] == [
        "recall_at_1",
        "recall_at_10",
        "recall_at_100",
    ]


def test_k_capped_at_reference_count():
    # 5 samples at 0 (A), 10 (B), 100 (A), 110 (B), 250 (C, lone) degrees.
    # First same-class rank: A0 2, B10 3, A100 3, B110 2. Recall@8 asks for
    # more neighbours than the 4 references: the k-NN returns all of them.
    x = torch.tensor([_unit(a) for a in (0, 10, 100, 110, 250)], dtype=torch.float32)
    y = torch.tensor([0, 1, 0, 1, 2])
    for _, calc in _calculators():
        r = calc.get_accuracy(x, y)
        assert r["recall_at_1"] == 0.0
        assert r["recall_at_2"] == pytest.approx(0.5)
        assert r["recall_at_4"] == 1.0
        assert r["recall_at_8"] == 1.0


def test_mean_reciprocal_rank_alone():
    x, y = circle_example()
    calc = RecallAtKAccuracyCalculator(device=CPU, include=("mean_reciprocal_rank",))
    assert set(calc.get_accuracy(x, y)) == {"mean_reciprocal_rank"}
    calc = RecallAtKAccuracyCalculator(device=CPU, include=("recall_at_2",))
    assert calc.get_accuracy(x, y) == {"recall_at_2": pytest.approx(8 / 13)}


def test_all_lone_is_nan():
    x = torch.tensor([_unit(a) for a in (0, 90, 180)], dtype=torch.float32)
    calc = RecallAtKAccuracyCalculator(device=CPU, include=RECALLS)
    r = calc.get_accuracy(x, torch.tensor([0, 1, 2]))
    assert all(math.isnan(v) for v in r.values())


def test_make_accuracy_calculator_torch_fallback(monkeypatch):
    x, y = circle_example()
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss -> ImportError
    assert not faiss_available()
    calc = make_accuracy_calculator(device="cpu")
    assert isinstance(calc.knn_func, CustomKNN)
    metrics = calc.get_curr_metrics()
    assert "NMI" not in metrics and "AMI" not in metrics
    assert set(RECALLS) <= set(metrics)
    _check_circle(calc.get_accuracy(3.0 * x, y))  # normalised first
    with pytest.raises(ValueError, match="faiss"):
        make_accuracy_calculator(device="cpu", include=("NMI", "recall_at_1"))


@pytest.mark.skipif(not faiss_available(), reason="faiss is not installed")
def test_make_accuracy_calculator_faiss_matches_torch(monkeypatch):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(400, 12, generator=g) * torch.rand(400, 1, generator=g) * 5
    y = torch.randint(0, 50, (400,), generator=g)
    with_faiss = make_accuracy_calculator(device="cpu", recall_at_ks=(1, 5, 10))
    assert "NMI" in with_faiss.get_curr_metrics()
    a = with_faiss.get_accuracy(x.numpy(), y.numpy())
    monkeypatch.setitem(sys.modules, "faiss", None)
    b = make_accuracy_calculator(device="cpu", recall_at_ks=(1, 5, 10)).get_accuracy(x, y)
    for name, value in b.items():
        assert a[name] == pytest.approx(value, abs=1e-6), name
    assert 0 <= a["NMI"] <= 1


def test_per_class_and_avg_of_avgs():
    x, y = circle_example()
    knn = CustomKNN(LpDistance(normalize_embeddings=False))
    per_class = RecallAtKAccuracyCalculator(
        device=CPU, include=("recall_at_4",), return_per_class=True, knn_func=knn
    ).get_accuracy(x, y)["recall_at_4"]
    # Non-lone classes in label order A, B, D, G, H, K: misses only in K.
    assert per_class == pytest.approx([1, 1, 1, 1, 1, 0])
    avg = RecallAtKAccuracyCalculator(
        device=CPU, include=("recall_at_4",), avg_of_avgs=True, knn_func=knn
    ).get_accuracy(x, y)["recall_at_4"]
    assert avg == pytest.approx(np.mean([1, 1, 1, 1, 1, 0]))
