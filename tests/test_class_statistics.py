"""ClassStatistics: per-class n, S and Q, checked against loops over samples."""

import pytest
import torch
from helpers import assert_statistics_match, loop_statistics

from pml_htl import ClassStatistics

ODD_LABELS = [7, 10, -3, 1000]


@pytest.mark.parametrize("normalize", [True, False])
def test_from_embeddings_sums_each_class_under_its_own_label(normalize):
    torch.manual_seed(1)
    y = torch.tensor([1000, 7, -3, 10, 7, 7, -3, 1000, 10, -3, 7], dtype=torch.long)
    x = torch.randn(len(y), 5, dtype=torch.float64)
    stats = ClassStatistics.from_embeddings(x, y, normalize=normalize)
    assert stats.labels.tolist() == sorted(ODD_LABELS)
    assert stats.num_classes == 4 and stats.embedding_size == 5
    assert_statistics_match(stats, loop_statistics([(x, y)], normalize))
    assert stats.squared_norms.dtype == torch.float64


def test_float32_input_accumulates_in_float64():
    torch.manual_seed(2)
    y = torch.tensor([7, 10, -3, 1000, 7, 10], dtype=torch.int32)
    x = torch.randn(6, 4, dtype=torch.float32)
    stats = ClassStatistics.from_embeddings(x, y)
    assert stats.labels.tolist() == sorted(ODD_LABELS)
    assert_statistics_match(stats, loop_statistics([(x, y)]))


def assert_statistics_of_samples(stats, x, y):
    """stats hold the normalised statistics of the samples x with labels y."""
    assert_statistics_match(stats, loop_statistics([(x, y)]))


def test_update_and_add_give_the_statistics_of_all_samples():
    torch.manual_seed(3)
    y1 = torch.tensor([7, 10, 7, 1000])
    y2 = torch.tensor([-3, 7, 10, 10, 55])  # overlapping and new labels
    y3 = torch.tensor([1000, -3])
    x1, x2, x3 = (torch.randn(len(y), 4, dtype=torch.float64) for y in (y1, y2, y3))
    x_all, y_all = torch.cat([x1, x2, x3]), torch.cat([y1, y2, y3])

    a = ClassStatistics.from_embeddings(x1, y1)
    returned = a.update(x2, y2)
    assert returned is a
    a.update(x3, y3)
    assert_statistics_of_samples(a, x_all, y_all)

    s1 = ClassStatistics.from_embeddings(x1, y1)
    s2 = ClassStatistics.from_embeddings(x2, y2)
    s3 = ClassStatistics.from_embeddings(x3, y3)
    assert_statistics_of_samples(s1 + s2 + s3, x_all, y_all)
    assert_statistics_of_samples(s3 + (s2 + s1), x_all, y_all)
    # the operands are not modified by +
    assert_statistics_of_samples(s1, x1, y1)

    e = ClassStatistics.empty(4)
    e.update(x1, y1)
    e.update(x2, y2)
    assert_statistics_of_samples(e, torch.cat([x1, x2]), torch.cat([y1, y2]))


def test_as_tensor_round_trips_and_sums_like_an_all_reduce():
    torch.manual_seed(4)
    labels = torch.tensor(ODD_LABELS)
    shards = []
    for shard in range(3):
        # every shard holds every class (as after padding for an all-reduce)
        y = labels[torch.randperm(4)].repeat(2)
        shards.append((torch.randn(8, 5, dtype=torch.float64), y))
    stats = [ClassStatistics.from_embeddings(x, y) for x, y in shards]
    packed = [s.as_tensor() for s in stats]
    assert packed[0].shape == (4, 5 + 2)
    assert packed[0].dtype == torch.float64

    back = ClassStatistics.from_tensor(stats[0].labels, packed[0])
    for name in ("labels", "counts", "sums", "squared_norms"):
        assert torch.equal(getattr(back, name), getattr(stats[0], name)), name

    reduced = ClassStatistics.from_tensor(stats[0].labels, sum(packed))
    x_all = torch.cat([x for x, _ in shards])
    y_all = torch.cat([y for _, y in shards])
    assert_statistics_of_samples(reduced, x_all, y_all)


def test_statistics_over_a_known_index_match_from_embeddings():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(30, 5, generator=g), torch.tensor([3, 9, 9, 1, 3] * 6)
    stats = ClassStatistics.zeros(torch.tensor([1, 3, 9, 42]), 5)
    for part in range(3):
        rows = slice(10 * part, 10 * (part + 1))
        stats.update(x[rows], y[rows])
    ref = ClassStatistics.from_embeddings(x, y)
    got = stats.nonempty()
    assert torch.equal(got.labels, ref.labels) and torch.equal(got.counts, ref.counts)
    assert torch.allclose(got.sums, ref.sums) and torch.allclose(
        got.squared_norms, ref.squared_norms
    )
    stats.update(x[:2], torch.tensor([7, 3]))  # an unknown class joins the index
    assert 7 in stats.labels.tolist() and int(stats.counts[stats.labels == 7]) == 1


# ============================================================== bad input
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_embeddings_are_refused_and_change_nothing(bad):
    x = torch.randn(6, 4, dtype=torch.float64)
    x[2, 1] = bad
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    with pytest.raises(ValueError, match="embeddings"):
        ClassStatistics.from_embeddings(x, y)
    stats = ClassStatistics.from_embeddings(x[:2], y[:2])
    before = stats.as_tensor().clone()
    with pytest.raises(ValueError, match="embeddings"):
        stats.update(x, y)
    assert torch.equal(stats.as_tensor(), before)


def test_empty_embeddings_are_refused():
    with pytest.raises(ValueError, match="embeddings"):
        ClassStatistics.from_embeddings(
            torch.zeros(0, 4, dtype=torch.float64), torch.zeros(0, dtype=torch.long)
        )


def test_labels_of_wrong_shape_dtype_or_length_are_refused():
    x = torch.randn(6, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="labels"):
        ClassStatistics.from_embeddings(x, torch.tensor([0, 0, 1, 1, 2, 2])[:, None])
    with pytest.raises(TypeError, match="labels"):
        ClassStatistics.from_embeddings(x, torch.tensor([0.0, 0, 1, 1, 2, 2]))
    with pytest.raises(ValueError, match="labels"):
        ClassStatistics.from_embeddings(x, torch.tensor([0, 0, 1, 1, 2]))


def test_update_with_another_embedding_size_says_so():
    s = ClassStatistics.from_embeddings(torch.randn(4, 3), torch.tensor([0, 0, 1, 1]))
    before = s.sums.clone()
    with pytest.raises(ValueError, match="embedding size 3, got 5"):
        s.update(torch.randn(2, 5), torch.tensor([0, 1]))
    assert torch.equal(s.sums, before)


def test_with_missing_from_takes_only_the_classes_that_have_no_sample():
    """A training epoch's statistics, and a previous tree's for the classes the
    epoch did not draw (an empty class of a zeros() index counts as missing)."""
    torch.manual_seed(7)
    y_new, y_old = torch.tensor([7, 10, 7, 10]), torch.tensor([7, -3, 1000, 10, -3])
    x_new, x_old = torch.randn(4, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    new = ClassStatistics.zeros(torch.tensor(ODD_LABELS), 3).update(x_new, y_new)
    old = ClassStatistics.from_embeddings(x_old, y_old)
    merged = new.with_missing_from(old)
    keep_old = torch.isin(y_old, torch.tensor([-3, 1000]))
    assert_statistics_match(
        merged, loop_statistics([(x_new, y_new), (x_old[keep_old], y_old[keep_old])])
    )
    assert new.counts.tolist() == [0, 2, 2, 0]  # neither input changes
    with pytest.raises(ValueError, match="embedding size"):
        new.with_missing_from(ClassStatistics.from_embeddings(torch.randn(2, 4), y_new[:2] + 5))
