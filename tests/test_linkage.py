"""The merge strategies give the same tree: rounds of reciprocal nearest
neighbours on neighbour lists (no matrix) or on the dense matrix, the
nearest-neighbour chain, and the hand-over between them; checked against
scipy and against a naive agglomeration over raw samples."""

import inspect

import numpy as np
import pytest
import torch
from helpers import RefTree, hierarchical_data, label_grid, off_diagonal

from pml_htl import ClassStatistics, HierarchicalClassTree
from pml_htl.tree import hierarchical_class_tree, linkage
from pml_htl.tree.linkage import (
    DenseBackend,
    LinkageBackend,
    NeighborListBackend,
    agglomerate,
    cut_levels,
    lance_williams,
    nn_chain,
)


def clustered_statistics(num_classes, dim=16, per_class=4, seed=0, sizes=None):
    g = torch.Generator().manual_seed(seed)
    supers = torch.randn(6, dim, generator=g)
    centers = supers[torch.randint(6, (num_classes,), generator=g)]
    centers = centers + 0.5 * torch.randn(num_classes, dim, generator=g)
    if sizes is None:
        sizes = torch.full((num_classes,), per_class)
    x = centers.repeat_interleave(sizes, 0)
    x = x + 0.4 * torch.randn(x.shape, generator=g)
    labels = torch.arange(num_classes).repeat_interleave(sizes)
    return ClassStatistics.from_embeddings(x, labels), x, labels


@pytest.fixture
def rounds_only(monkeypatch):
    """Merge rounds to the end: no hand-over to the nearest-neighbour chain."""
    monkeypatch.setattr(linkage, "_NN_CHAIN_MAX_NODES", 0)
    monkeypatch.setattr(linkage, "_NN_CHAIN_ALWAYS", 0)


def neighbor_list_tree(monkeypatch, statistics, **kwargs):
    with monkeypatch.context() as m:
        m.setattr(hierarchical_class_tree, "AVERAGE_DENSE_MAX_CLASSES", 1)
        return HierarchicalClassTree(statistics, **kwargs)


def class_distances(statistics):
    mu = statistics.sums / statistics.counts[:, None]
    q = statistics.squared_norms / statistics.counts
    return (q[:, None] + q[None, :] - 2 * mu @ mu.T).clamp(min=0)


def dense_merges(statistics):
    """Average linkage by the nearest-neighbour chain on the float64 matrix."""
    D = class_distances(statistics).numpy().copy()
    return nn_chain(D, statistics.counts.numpy(), "average")


def assert_same_tree(lists, dense):
    assert torch.equal(lists.level_assignments, dense.level_assignments)
    np.testing.assert_allclose(
        np.sort(lists.merges[:, 2].numpy()), np.sort(dense.merges[:, 2].numpy()), rtol=1e-9
    )


@pytest.mark.parametrize(
    "method, expected",
    [("average", [1.25, 1.25, 3.0]), ("single", [0.5, 1.0, 3.0]), ("complete", [1.5, 2.0, 3.0])],
)
def test_lance_williams_on_arrays_and_tensors(method, expected):
    """d(A u B, X) for n_A = 1, n_B = 3; tensors keep their dtype and device."""
    d_a, d_b = np.array([0.5, 2.0, 3.0]), np.array([1.5, 1.0, 3.0])
    got = lance_williams(method, d_a, d_b, 1.0, 3.0)
    assert isinstance(got, np.ndarray)
    np.testing.assert_array_equal(got, expected)
    counts = torch.tensor([1.0, 3.0], dtype=torch.float64)
    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        for dtype in (torch.float32, torch.float64):
            a, b = (torch.tensor(d, dtype=dtype, device=device) for d in (d_a, d_b))
            got = lance_williams(method, a, b, counts[:1].to(device), counts[1:].to(device))
            assert got.dtype == dtype and got.device == a.device
            np.testing.assert_array_equal(got.cpu().numpy(), expected)


BACKEND_METHODS = ("nearest", "height", "merge", "live_matrix")


def small_backends():
    stats, _, _ = clustered_statistics(6)
    dense = DenseBackend(class_distances(stats), stats.counts, "average")
    return [dense, NeighborListBackend(stats.counts, stats.sums, stats.squared_norms, 2)]


def test_backends_satisfy_the_protocol():
    """Both backends have what agglomerate calls, with the Protocol's signatures."""
    protocol_methods = {
        name
        for name, value in vars(LinkageBackend).items()
        if inspect.isfunction(value) and not name.startswith("_")
    }
    assert protocol_methods == set(BACKEND_METHODS)
    for backend in small_backends():
        assert isinstance(backend, LinkageBackend)
        for name in BACKEND_METHODS:
            expected = inspect.signature(getattr(LinkageBackend, name))
            assert inspect.signature(getattr(type(backend), name)) == expected, name


@pytest.mark.parametrize("missing", ("linkage",) + BACKEND_METHODS)
def test_a_renamed_member_breaks_the_protocol(missing):
    """So the isinstance check above fails when a backend's member is renamed."""
    members = {name: getattr(DenseBackend, name) for name in BACKEND_METHODS}
    members.update(linkage="average")
    members[missing + "_renamed"] = members.pop(missing)
    assert not isinstance(type("Renamed", (), members)(), LinkageBackend)


@pytest.mark.parametrize("seed", [0, 1])
def test_neighbor_lists_match_dense_and_scipy(monkeypatch, rounds_only, seed):
    from scipy.cluster.hierarchy import cophenet, linkage
    from scipy.spatial.distance import squareform

    stats, x, labels = clustered_statistics(150, seed=seed)
    dense = HierarchicalClassTree(stats)
    lists = neighbor_list_tree(monkeypatch, stats)
    assert_same_tree(lists, dense)
    assert torch.equal(dense.neighbors, lists.neighbors)
    heights = np.sort(lists.merges[:, 2].numpy())

    # equal class sizes: scipy's average linkage on the brute-force class distances
    xn = torch.nn.functional.normalize(x.double(), dim=1)
    C = 150
    D = torch.zeros(C, C, dtype=torch.float64)
    for p in range(C):
        D[p] = (
            ((xn[labels == p][:, None, None] - xn.view(C, 4, -1)[None]) ** 2).sum(-1).mean((0, 2))
        )
    coph = squareform(cophenet(linkage(squareform(D.numpy(), checks=False), "average")))
    np.testing.assert_allclose(np.sort(squareform(coph, checks=False)).max(), heights.max())
    thresholds = lists.thresholds.numpy()
    expected = (coph[:, :, None] >= thresholds[None, None, :]).sum(-1).clip(max=16)
    ul = torch.arange(C)
    got = lists.merge_level(ul[:, None], ul[None, :]).numpy()
    off = ~np.eye(C, dtype=bool)
    assert (got[off] == expected[off]).all()


@pytest.mark.parametrize("seed", [9, 10])
def test_neighbor_lists_unequal_sizes_vs_naive_agglomeration(monkeypatch, rounds_only, seed):
    sizes = [1, 2, 8, 3, 6, 2, 5, 1, 4]
    labels = [5, 17, -1, 40, 2, 99, 11, 7, 23]
    x, y = hierarchical_data(sizes, labels=labels, seed=seed)
    stats = ClassStatistics.from_embeddings(x, y)
    # num_neighbors=2: lists run out and are searched again
    tree = neighbor_list_tree(monkeypatch, stats, num_neighbors=2)
    ref = RefTree(x.numpy(), y.numpy(), 16)
    H = ref.levels_from_heights(ref.naive_average_heights())
    a, b = label_grid(ref.classes)
    np.testing.assert_array_equal(off_diagonal(tree.merge_level(a, b).numpy()), off_diagonal(H))


@pytest.mark.parametrize("width", [1, 2, 3, 8, 500])
def test_any_list_width_gives_the_dense_tree(rounds_only, width):
    sizes = torch.randint(1, 9, (120,), generator=torch.Generator().manual_seed(3))
    stats, _, _ = clustered_statistics(120, seed=3, sizes=sizes)
    backend = NeighborListBackend(stats.counts, stats.sums, stats.squared_norms, width)
    assert backend.lists.shape == (120, min(width, 119))
    merges = agglomerate(backend, 120)
    if width <= 3:
        assert backend.searched_rows > 120  # the re-search path ran
    ref = dense_merges(stats)
    thresholds = np.linspace(0.05, 4, 40)
    np.testing.assert_array_equal(
        cut_levels(merges, 120, thresholds), cut_levels(ref, 120, thresholds)
    )
    np.testing.assert_allclose(np.sort(merges[:, 2]), np.sort(ref[:, 2]), rtol=1e-9)


@pytest.mark.parametrize("num_classes", [2, 3, 4])
def test_neighbor_lists_few_classes(monkeypatch, rounds_only, num_classes):
    stats, _, _ = clustered_statistics(num_classes, seed=num_classes)
    assert_same_tree(neighbor_list_tree(monkeypatch, stats), HierarchicalClassTree(stats))


def test_neighbor_lists_identical_classes(monkeypatch, rounds_only):
    """Ties: classes with identical statistics merge at the same height."""
    stats, _, _ = clustered_statistics(40, seed=5)
    twin = ClassStatistics(
        torch.arange(80),
        stats.counts.repeat(2),
        stats.sums.repeat(2, 1),
        stats.squared_norms.repeat(2),
    )
    assert_same_tree(neighbor_list_tree(monkeypatch, twin), HierarchicalClassTree(twin))


def test_float32_search_above_4096_classes_matches_dense_float64():
    stats, _, _ = clustered_statistics(4200, dim=8, per_class=2, seed=7)
    tree = HierarchicalClassTree(stats)  # above the threshold: neighbour lists in float32
    ref = dense_merges(stats)
    np.testing.assert_array_equal(
        tree.level_assignments.numpy(), cut_levels(ref, 4200, tree.thresholds.numpy())
    )
    np.testing.assert_allclose(np.sort(tree.merges[:, 2].numpy()), np.sort(ref[:, 2]), rtol=1e-6)
    # the cached neighbours are the nearest classes by d(p, q)
    rows = torch.arange(0, 4200, 97)
    d = tree._class_distance_block(rows, None)
    d[torch.arange(len(rows)), rows] = float("inf")
    got = d.gather(1, tree.neighbors[rows])
    np.testing.assert_allclose(got.numpy(), d.topk(64, largest=False).values.numpy(), rtol=1e-5)


def test_single_linkage_without_room_for_a_matrix_says_so(monkeypatch):
    stats, _, _ = clustered_statistics(20)
    monkeypatch.setattr(hierarchical_class_tree, "DENSE_MAX_BYTES", 0)
    with pytest.raises(ValueError, match="linkage='average'"):
        HierarchicalClassTree(stats, linkage="single")


@pytest.mark.parametrize("method", ["average", "single", "complete"])
@pytest.mark.parametrize("always, max_nodes", [(0, 0), (0, 4096), (60, 4096), (4096, 4096)])
def test_rounds_hand_over_to_the_chain(monkeypatch, method, always, max_nodes):
    """Dense rounds, the chain, and rounds that hand the rest to the chain (at
    60 nodes, or when a round merges few pairs) all give scipy's tree."""
    from scipy.cluster.hierarchy import linkage as scipy_linkage
    from scipy.spatial.distance import squareform

    monkeypatch.setattr(linkage, "_NN_CHAIN_ALWAYS", always)
    monkeypatch.setattr(linkage, "_NN_CHAIN_MAX_NODES", max_nodes)
    stats, _, _ = clustered_statistics(300, seed=11)  # equal sizes: scipy's average applies
    D = class_distances(stats)
    merges = agglomerate(DenseBackend(D.clone(), stats.counts, method), 300)
    assert sorted(merges[:, 1].astype(int).tolist()) == sorted(set(merges[:, 1].astype(int)))
    Z = scipy_linkage(squareform(D.numpy(), checks=False), method=method)
    thresholds = np.linspace(0.01, 4, 60)
    ours = cut_levels(merges, 300, thresholds)
    for level, t in enumerate(thresholds):
        from scipy.cluster.hierarchy import fcluster

        theirs = fcluster(Z, np.nextafter(t, -np.inf), criterion="distance")
        assert _same_partition(ours[level], theirs)
    np.testing.assert_allclose(np.sort(merges[:, 2]), np.sort(Z[:, 2]), rtol=1e-9)


def test_neighbor_lists_hand_over_to_the_chain(monkeypatch):
    monkeypatch.setattr(linkage, "_NN_CHAIN_ALWAYS", 40)
    sizes = torch.randint(1, 9, (150,), generator=torch.Generator().manual_seed(4))
    stats, _, _ = clustered_statistics(150, seed=4, sizes=sizes)
    lists = neighbor_list_tree(monkeypatch, stats)
    thresholds = lists.thresholds.numpy()
    ref = dense_merges(stats)
    np.testing.assert_array_equal(lists.level_assignments.numpy(), cut_levels(ref, 150, thresholds))
    np.testing.assert_allclose(np.sort(lists.merges[:, 2].numpy()), np.sort(ref[:, 2]), rtol=1e-9)


def lattice_statistics(num_classes, seed=0):
    """Class means on a 3 x 3 x 3 lattice: thousands of exactly tied distances."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randint(0, 3, (num_classes, 3), generator=g).double()
    x = centers.repeat_interleave(2, 0)
    x[1::2] += 0.5
    labels = torch.arange(num_classes).repeat_interleave(2)
    return ClassStatistics.from_embeddings(x, labels, normalize=False)


def assert_greedy_average_linkage(merges, statistics, tol=1e-9):
    """With ties the dendrogram is not unique, so check what defines one: taken
    in height order, every merge joins two live clusters at the smallest
    distance between any two, and its height is that distance. The update is
    written out here, not taken from linkage.lance_williams, to stay an
    independent check of it."""
    D = class_distances(statistics).numpy().copy()
    sizes = statistics.counts.numpy().copy()
    C = D.shape[0]
    np.fill_diagonal(D, np.inf)
    live = np.ones(C, dtype=bool)
    assert merges.shape == (C - 1, 3)
    for i, j, h in merges[np.argsort(merges[:, 2], kind="stable")]:
        i, j = int(i), int(j)
        assert live[i] and live[j] and i != j
        assert abs(D[i, j] - h) <= tol and abs(D.min() - h) <= tol
        D[i] = D[:, i] = (sizes[i] * D[i] + sizes[j] * D[j]) / (sizes[i] + sizes[j])
        D[j] = D[:, j] = D[i, i] = np.inf
        sizes[i] += sizes[j]
        live[j] = False


@pytest.mark.parametrize("width", [1, 2, 3, 5, 7, 12])
@pytest.mark.parametrize("chain", [False, True])
def test_tied_distances_give_a_valid_tree(monkeypatch, width, chain):
    """Thousands of tied distances and neighbour lists of any width, even
    shorter than the lazy passes' widths, give a greedy average-linkage tree."""
    monkeypatch.setattr(linkage, "_NN_CHAIN_ALWAYS", 40 if chain else 0)
    monkeypatch.setattr(linkage, "_NN_CHAIN_MAX_NODES", 4096 if chain else 0)
    stats = lattice_statistics(300)
    backend = NeighborListBackend(stats.counts, stats.sums, stats.squared_norms, width)
    assert_greedy_average_linkage(agglomerate(backend, 300), stats)


@pytest.mark.parametrize("num_neighbors", [3, 12])
def test_tied_distances_with_short_lists_above_4096_classes(num_neighbors):
    stats = lattice_statistics(4200)
    tree = HierarchicalClassTree(stats, num_neighbors=num_neighbors)  # float32 search
    merges = tree.merges.numpy()
    assert merges.shape == (4199, 3)
    # replayed in the order recorded, each merge joins two live clusters and its
    # height is their average-linkage distance from the merged statistics
    n, S, Q = (t.numpy().copy() for t in (stats.counts, stats.sums, stats.squared_norms))
    live = np.ones(4200, dtype=bool)
    for i, j, h in merges:
        i, j = int(i), int(j)
        assert live[i] and live[j] and i != j
        d = Q[i] / n[i] + Q[j] / n[j] - 2 * (S[i] / n[i]) @ (S[j] / n[j])
        assert abs(d - h) <= 1e-9
        n[i], S[i], Q[i], live[j] = n[i] + n[j], S[i] + S[j], Q[i] + Q[j], False


@pytest.mark.parametrize("method", ["average", "single"])
def test_float32_far_from_the_origin_gives_the_float64_tree(method):
    """Unnormalised embeddings offset by 100: the float32 search (and the
    float32 matrix of single linkage above 4,096 classes) keep the class
    distances despite cancellation: the merges match the float64 chain's."""
    g = torch.Generator().manual_seed(0)
    C = 4200
    centers = torch.randn(20, 8, generator=g, dtype=torch.float64)
    centers = centers[torch.randint(20, (C,), generator=g)]
    centers = centers + 0.6 * torch.randn(C, 8, generator=g, dtype=torch.float64)
    x = centers.repeat_interleave(2, 0) + 0.5 * torch.randn(
        2 * C, 8, generator=g, dtype=torch.float64
    )
    stats = ClassStatistics.from_embeddings(x + 100, torch.arange(C).repeat_interleave(2), False)
    tree = HierarchicalClassTree(stats, linkage=method)
    D = class_distances(
        ClassStatistics.from_embeddings(x, torch.arange(C).repeat_interleave(2), False)
    )
    ref = nn_chain(D.numpy().copy(), stats.counts.numpy(), method)
    np.testing.assert_allclose(np.sort(tree.merges[:, 2].numpy()), np.sort(ref[:, 2]), rtol=1e-4)
    thresholds = np.quantile(ref[:, 2], np.linspace(0.05, 0.95, 19))
    same = [
        _same_partition(a, b)
        for a, b in zip(
            cut_levels(tree.merges.numpy(), C, thresholds), cut_levels(ref, C, thresholds)
        )
    ]
    assert sum(same) >= 17  # a threshold may fall within float32 rounding of a merge


def _same_partition(a, b):
    pairs = np.unique(np.stack([a, b], 1), axis=0)
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))
