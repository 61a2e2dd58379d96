"""HierarchicalClassTree against brute-force references.

Every reference is computed from the formulas of docs/method.md (helpers.RefTree:
loops over samples or sample pairs, scipy's linkage, a naive agglomerative
loop); the code under test is only called, never used as its own reference.
"""

import io

import numpy as np
import pytest
import torch
from helpers import RefTree, hierarchical_data, label_grid, off_diagonal

from pml_htl import ClassStatistics, HierarchicalClassTree


# ===================================================== tree: s_c, d, d0, d_l
@pytest.mark.parametrize("num_levels", [1, 3, 16])
def test_spread_distance_d0_thresholds_bruteforce(num_levels, device):
    labels = [1000, 7, -3, 10, 42, 5]
    sizes = [4, 1, 3, 5, 2, 1]  # two single-sample classes
    x, y = hierarchical_data(sizes, labels=labels, seed=5)
    perm = torch.randperm(len(y))  # labels in arbitrary order
    x, y = x[perm], y[perm]
    tree = HierarchicalClassTree.from_embeddings(x.to(device), y.to(device), num_levels=num_levels)
    assert tree.device.type == device.type
    ref = RefTree(x.numpy(), y.numpy(), num_levels)

    lab = torch.tensor(ref.classes, device=device)
    np.testing.assert_allclose(tree.d0, ref.d0, rtol=1e-10)
    np.testing.assert_allclose(
        tree.thresholds.cpu().numpy(), ref.thresholds, rtol=1e-10, atol=1e-12
    )
    assert len(tree.thresholds) == num_levels + 1
    np.testing.assert_allclose(tree.spread(lab).cpu().numpy(), ref.spreads, rtol=1e-9, atol=1e-12)
    # the single-sample classes get s_c = d0
    single = [c for c, n in zip(ref.classes, ref.sizes) if n == 1]
    assert len(single) == 2
    np.testing.assert_allclose(
        tree.spread(torch.tensor(single, device=device)).cpu().numpy(), [ref.d0] * 2, rtol=1e-10
    )
    # d0 must not be the mean over all classes (singletons excluded)
    assert abs(ref.d0 - np.mean(ref.spreads[ref.sizes >= 2].tolist() + [0, 0])) > 1e-6

    a, b = label_grid(ref.classes, device)
    got = tree.class_distance(a, b).cpu().numpy()
    np.testing.assert_allclose(off_diagonal(got), off_diagonal(ref.dist), rtol=1e-9, atol=1e-12)
    # lookups in an arbitrary order and with repeats
    qa = torch.tensor([10, -3, 10, 1000], device=device)
    qb = torch.tensor([5, 42, 7, -3], device=device)
    idx = {c: i for i, c in enumerate(ref.classes)}
    want = [ref.dist[idx[p], idx[q]] for p, q in zip(qa.tolist(), qb.tolist())]
    np.testing.assert_allclose(tree.class_distance(qa, qb).cpu().numpy(), want, rtol=1e-9)
    want_s = [ref.spreads[idx[p]] for p in qa.tolist()]
    np.testing.assert_allclose(tree.spread(qa).cpu().numpy(), want_s, rtol=1e-9)


def test_tree_of_unnormalised_statistics_matches_brute_force():
    x, y = hierarchical_data([3, 4, 2], labels=[2, 9, 4], seed=6)
    x = x / 3.0  # keep squared distances mostly small
    stats = ClassStatistics.from_embeddings(x, y, normalize=False)
    tree = HierarchicalClassTree(stats, num_levels=8)
    ref = RefTree(x.numpy(), y.numpy(), 8, normalize=False)
    lab = torch.tensor(ref.classes)
    np.testing.assert_allclose(tree.spread(lab).numpy(), ref.spreads, rtol=1e-9)
    a, b = label_grid(ref.classes)
    np.testing.assert_allclose(
        off_diagonal(tree.class_distance(a, b).numpy()), off_diagonal(ref.dist), rtol=1e-9
    )


# ============================================================ merge levels
@pytest.mark.parametrize("method", ["average", "single", "complete"])
@pytest.mark.parametrize("num_levels", [4, 16, 50])
def test_merge_levels_equal_sizes_vs_scipy(method, num_levels, device):
    labels = [31, -2, 8, 100, 15, 4, 77, 0, 9]
    x, y = hierarchical_data([3] * len(labels), labels=labels, seed=7)
    tree = HierarchicalClassTree.from_embeddings(
        x.to(device), y.to(device), num_levels=num_levels, linkage=method
    )
    ref = RefTree(x.numpy(), y.numpy(), num_levels)
    H, _ = ref.scipy_levels(method)
    if num_levels >= 16:
        assert len(set(off_diagonal(H).tolist())) >= 3  # the data spans several levels
    a, b = label_grid(ref.classes, device)
    got = tree.merge_level(a, b).cpu().numpy()
    np.testing.assert_array_equal(off_diagonal(got), off_diagonal(H))
    want_dH = ref.thresholds[H]
    np.testing.assert_allclose(
        off_diagonal(tree.merge_distance(a, b).cpu().numpy()), off_diagonal(want_dH), rtol=1e-10
    )


def test_merge_level_zero_and_level_start(device):
    # classes 0/1 and 3/4 share a centre and are tight: they merge below d0
    noises = [0.05, 0.05, 0.5, 0.05, 0.05, 0.6, 0.4, 0.5]
    labels = [12, 3, 50, -7, 8, 21, 33, 90]
    x, y = hierarchical_data([3] * 8, labels=labels, seed=8, noises=noises, twins=[(0, 1), (3, 4)])
    ref = RefTree(x.numpy(), y.numpy(), 16)
    H, _ = ref.scipy_levels("average")
    assert (off_diagonal(H) == 0).any()  # the data does have level-0 merges
    a, b = label_grid(ref.classes, device)
    x, y = x.to(device), y.to(device)
    t0 = HierarchicalClassTree.from_embeddings(x, y, num_levels=16, level_start=0)
    t1 = HierarchicalClassTree.from_embeddings(x, y, num_levels=16, level_start=1)
    np.testing.assert_array_equal(off_diagonal(t0.merge_level(a, b).cpu().numpy()), off_diagonal(H))
    np.testing.assert_array_equal(
        off_diagonal(t1.merge_level(a, b).cpu().numpy()), off_diagonal(np.maximum(H, 1))
    )
    np.testing.assert_allclose(
        off_diagonal(t1.merge_distance(a, b).cpu().numpy()),
        off_diagonal(ref.thresholds[np.maximum(H, 1)]),
        rtol=1e-10,
    )


@pytest.mark.parametrize("num_levels", [16, 64])
@pytest.mark.parametrize("seed", [9, 10])
def test_merge_levels_unequal_sizes_vs_naive_agglomeration(num_levels, seed, device):
    sizes = [1, 2, 8, 3, 6, 2, 5, 1, 4]
    labels = [5, 17, -1, 40, 2, 99, 11, 7, 23]
    x, y = hierarchical_data(sizes, labels=labels, seed=seed)
    tree = HierarchicalClassTree.from_embeddings(x.to(device), y.to(device), num_levels=num_levels)
    ref = RefTree(x.numpy(), y.numpy(), num_levels)
    heights = ref.naive_average_heights()
    H = ref.levels_from_heights(heights)
    a, b = label_grid(ref.classes, device)
    np.testing.assert_array_equal(
        off_diagonal(tree.merge_level(a, b).cpu().numpy()), off_diagonal(H)
    )
    np.testing.assert_allclose(
        off_diagonal(tree.merge_distance(a, b).cpu().numpy()),
        off_diagonal(ref.thresholds[H]),
        rtol=1e-10,
    )


@pytest.mark.parametrize("method", ["average", "single", "complete"])
def test_linkage_matrix_is_scipys_tree(method):
    """The exported Z: valid for SciPy, monotonic, its cophenetic distances
    equal to SciPy's own linkage of the class distances (and, for average
    linkage of unequal classes, to the naive agglomeration), and cut at the
    thresholds d_l it gives the tree's own merge levels."""
    from scipy.cluster.hierarchy import cophenet, dendrogram, is_monotonic, is_valid_linkage
    from scipy.spatial.distance import squareform

    sizes = [1, 2, 8, 3, 6, 2, 5, 1, 4] if method == "average" else [3] * 9
    labels = [5, 17, -1, 40, 2, 99, 11, 7, 23]
    x, y = hierarchical_data(sizes, labels=labels, seed=9)
    tree = HierarchicalClassTree.from_embeddings(x, y, num_levels=16, linkage=method)
    ref = RefTree(x.numpy(), y.numpy(), 16)
    Z = tree.linkage_matrix()
    assert is_valid_linkage(Z) and is_monotonic(Z)
    assert Z[-1, 3] == len(labels)
    heights = squareform(cophenet(Z))
    want = ref.naive_average_heights() if method == "average" else ref.scipy_levels(method)[1]
    np.testing.assert_allclose(off_diagonal(heights), off_diagonal(want), rtol=1e-9)
    a, b = label_grid(ref.classes, "cpu")
    np.testing.assert_array_equal(
        off_diagonal(ref.levels_from_heights(heights)),
        off_diagonal(tree.merge_level(a, b).numpy()),
    )
    leaves = dendrogram(Z, no_plot=True, labels=tree.labels.tolist())["ivl"]
    assert sorted(leaves) == sorted(labels)


def test_unequal_sizes_data_is_discriminative():
    """Sanity check of the test data above: the sample-weighted merge heights
    differ from class-unweighted average linkage (scipy on class distances)."""
    sizes = [1, 2, 8, 3, 6, 2, 5, 1, 4]
    x, y = hierarchical_data(sizes, seed=9)
    ref = RefTree(x.numpy(), y.numpy(), 64)
    weighted = ref.naive_average_heights()
    _, unweighted = ref.scipy_levels("average")
    assert np.abs(weighted - unweighted).max() > 1e-3


def test_margin_matches_the_formula(device):
    sizes = [3, 4, 1, 5, 2, 3]
    labels = [4, 8, 15, 16, 23, 42]
    x, y = hierarchical_data(sizes, labels=labels, seed=11)
    tree = HierarchicalClassTree.from_embeddings(x.to(device), y.to(device), num_levels=16)
    ref = RefTree(x.numpy(), y.numpy(), 16)
    H = ref.levels_from_heights(ref.naive_average_heights())
    a, b = label_grid(ref.classes, device)
    for beta in (0.1, 0.5, 0.0):
        want = beta + ref.thresholds[H] - ref.spreads[:, None]
        got = tree.margin(a, b, beta=beta).cpu().numpy()
        np.testing.assert_allclose(off_diagonal(got), off_diagonal(want), rtol=1e-9, atol=1e-12)
        # the loss's (B, M) table over samples, repeats and any order included
        order = [3, 0, 3, 5, 1, 2, 4, 0]
        rows = torch.tensor([ref.classes[i] for i in order], device=device)
        table = tree.margin_table(rows, rows.flip(0), beta).cpu().numpy()
        np.testing.assert_allclose(table, want[np.ix_(order, order[::-1])], rtol=1e-9, atol=1e-12)


# ======================================================== nearest classes
def bf_nearest(ref, query, k, candidates=None):
    idx = {c: i for i, c in enumerate(ref.classes)}
    cands = ref.classes if candidates is None else candidates
    out = []
    for p in query:
        others = [q for q in cands if q != p]
        others.sort(key=lambda q: ref.dist[idx[p], idx[q]])
        out.append(others[:k])
    return out


def test_nearest_classes_bruteforce(device):
    sizes = [2, 3, 1, 4, 2, 3, 2, 5]
    labels = [70, 3, -9, 14, 500, 8, 21, 1]
    x, y = hierarchical_data(sizes, labels=labels, seed=12)
    tree = HierarchicalClassTree.from_embeddings(x.to(device), y.to(device), num_neighbors=2)
    ref = RefTree(x.numpy(), y.numpy(), 16)
    query = [14, 70, -9, 1, 14, 500]
    q = torch.tensor(query, device=device)
    for k in (1, 2, 4, 7):  # 4 and 7 exceed the cached num_neighbors=2
        got = tree.nearest_classes(q, k)
        assert got.shape == (len(query), k)
        assert got.tolist() == bf_nearest(ref, query, k), k

    candidates = [3, 14, 21, 8, 70]
    got = tree.nearest_classes(q, 3, candidates=torch.tensor(candidates, device=device))
    assert got.tolist() == bf_nearest(ref, query, 3, candidates)
    got = tree.nearest_classes(q, 1, candidates=torch.tensor(candidates, device=device))
    assert got.tolist() == bf_nearest(ref, query, 1, candidates)


def test_nearest_classes_all_candidates_when_query_not_among_them():
    sizes = [2, 3, 1, 4, 2, 3]
    labels = [70, 3, -9, 14, 500, 8]
    x, y = hierarchical_data(sizes, labels=labels, seed=13)
    tree = HierarchicalClassTree.from_embeddings(x, y)
    ref = RefTree(x.numpy(), y.numpy(), 16)
    candidates = [3, 14, 8]
    query = [70, -9, 500]  # none of them is a candidate: all 3 are neighbours
    got = tree.nearest_classes(torch.tensor(query), 3, candidates=torch.tensor(candidates))
    assert got.tolist() == bf_nearest(ref, query, 3, candidates)


# ================================================================= state
def test_state_dict_round_trip_weights_only():
    sizes = [3, 4, 1, 5, 2, 3, 2]
    labels = [4, 8, 15, 16, 23, 42, -1]
    x, y = hierarchical_data(sizes, labels=labels, seed=14)
    for linkage, level_start in (("average", 0), ("complete", 1)):
        tree = HierarchicalClassTree.from_embeddings(
            x, y, num_levels=12, linkage=linkage, level_start=level_start
        )
        buf = io.BytesIO()
        torch.save(tree.state_dict(), buf)
        buf.seek(0)
        state = torch.load(buf, weights_only=True)
        loaded = HierarchicalClassTree.from_state_dict(state)
        a, b = label_grid(sorted(labels))
        assert torch.equal(loaded.margin(a, b, beta=0.1), tree.margin(a, b, beta=0.1))
        assert torch.equal(loaded.merge_level(a, b), tree.merge_level(a, b))
        assert torch.equal(loaded.class_distance(a, b), tree.class_distance(a, b))
        assert torch.equal(loaded.spread(a[:, 0]), tree.spread(a[:, 0]))
        assert loaded.d0 == tree.d0
        assert loaded.linkage == linkage and loaded.level_start == level_start
        assert loaded.num_levels == 12
        q = torch.tensor(labels)
        assert torch.equal(loaded.nearest_classes(q, 3), tree.nearest_classes(q, 3))

        # load into an existing, different tree
        other = HierarchicalClassTree.from_embeddings(x[:10] * 2, y[:10], num_levels=3)
        other.load_state_dict(state)
        assert torch.equal(other.margin(a, b, beta=0.3), tree.margin(a, b, beta=0.3))

        # margins still agree with the formulas after the round trip
        ref = RefTree(x.numpy(), y.numpy(), 12)
        if linkage == "average":
            H = ref.levels_from_heights(ref.naive_average_heights())
        else:
            H, _ = ref.scipy_levels(linkage)  # complete: only class distances matter
            # complete linkage on class distances is independent of class sizes
        H = np.maximum(H, level_start)
        want = 0.1 + ref.thresholds[H] - ref.spreads[:, None]
        np.testing.assert_allclose(
            off_diagonal(loaded.margin(a, b, beta=0.1).numpy()), off_diagonal(want), rtol=1e-9
        )


def test_to_cpu_keeps_the_margins():
    x, y = hierarchical_data([3, 3, 2], labels=[1, 5, 9], seed=15)
    tree = HierarchicalClassTree.from_embeddings(x, y)
    a, b = label_grid([1, 5, 9])
    for dev in ("cpu", torch.device("cpu")):
        moved = tree.to(dev)
        assert moved.device.type == "cpu"
        assert torch.equal(moved.margin(a, b), tree.margin(a, b))
    assert tree.to("cpu") is tree


def test_to_another_device_and_back_keeps_every_table(device):
    x, y = hierarchical_data([3, 3, 2, 4], labels=[1, 5, 9, 12], seed=15)
    tree = HierarchicalClassTree.from_embeddings(x, y)
    moved = tree.to(device)
    assert moved.device.type == device.type and moved.statistics.device.type == device.type
    back = moved.to("cpu")
    for key, value in tree.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key
    a, b = label_grid([1, 5, 9, 12], device)
    torch.testing.assert_close(moved.margin(a, b).cpu(), tree.margin(*label_grid([1, 5, 9, 12])))
    assert moved.to(device) is moved


def test_labels_on_another_device_say_to_move_the_tree():
    x, y = hierarchical_data([3, 3, 2], labels=[1, 5, 9], seed=15)
    tree = HierarchicalClassTree.from_embeddings(x, y)
    with pytest.raises(ValueError, match="tree.to"):
        tree.spread(torch.zeros(2, dtype=torch.long, device="meta"))


# ============================================================== bad input
def good_stats():
    x, y = hierarchical_data([3, 3, 2], labels=[1, 5, 9], seed=16)
    return ClassStatistics.from_embeddings(x, y), x, y


def test_bad_fewer_than_two_classes():
    x = torch.randn(5, 4, dtype=torch.float64)
    y = torch.full((5,), 3, dtype=torch.long)
    with pytest.raises(ValueError, match="2 classes"):
        HierarchicalClassTree(ClassStatistics.from_embeddings(x, y))


def test_bad_no_class_with_two_samples():
    x = torch.randn(4, 4, dtype=torch.float64)
    y = torch.tensor([1, 2, 3, 4])
    with pytest.raises(ValueError, match="2 or more samples"):
        HierarchicalClassTree(ClassStatistics.from_embeddings(x, y))


@pytest.mark.parametrize(
    "value,exc", [(0, ValueError), (-3, ValueError), (2.0, TypeError), (2.5, TypeError)]
)
def test_bad_num_levels(value, exc):
    stats, x, y = good_stats()
    with pytest.raises(exc, match="num_levels"):
        HierarchicalClassTree(stats, num_levels=value)
    with pytest.raises(exc, match="num_levels"):
        HierarchicalClassTree.from_embeddings(x, y, num_levels=value)


@pytest.mark.parametrize("linkage", ["ward", "Average", "", None])
def test_bad_linkage(linkage):
    stats, _, _ = good_stats()
    with pytest.raises(ValueError, match="linkage"):
        HierarchicalClassTree(stats, linkage=linkage)


def test_bad_statistics_type():
    with pytest.raises(TypeError, match="statistics"):
        HierarchicalClassTree(torch.zeros(3, 4))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_bad_non_finite_embeddings(bad):
    x = torch.randn(6, 4, dtype=torch.float64)
    x[2, 1] = bad
    with pytest.raises(ValueError, match="embeddings"):
        HierarchicalClassTree.from_embeddings(x, torch.tensor([0, 0, 1, 1, 2, 2]))


def test_bad_labels_length():
    x = torch.randn(6, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="labels"):
        HierarchicalClassTree.from_embeddings(x, torch.tensor([0, 0, 1, 1, 2, 2, 2]))


def test_bad_unknown_label_lookups():
    stats, _, _ = good_stats()
    tree = HierarchicalClassTree(stats)
    with pytest.raises(ValueError, match="labels"):
        tree.spread(torch.tensor([1, 4]))
    with pytest.raises(ValueError, match="labels"):
        tree.margin(torch.tensor([1]), torch.tensor([10]))
    with pytest.raises(ValueError, match="labels"):
        tree.margin(torch.tensor([1000]), torch.tensor([5]))
    with pytest.raises(ValueError, match="labels"):
        tree.merge_distance(torch.tensor([1]), torch.tensor([-5]))
    with pytest.raises(ValueError, match="labels"):
        tree.class_distance(torch.tensor([0]), torch.tensor([5]))
    with pytest.raises(TypeError, match="labels"):
        tree.spread(torch.tensor([1.0]))
