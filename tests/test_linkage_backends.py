"""The matrix-free average linkage (neighbour lists) gives the same tree as the
dense matrix, as scipy and as a naive agglomeration over raw samples."""

import numpy as np
import pytest
import torch
from test_tree import RefTree, hierarchical_data, label_grid, off_diagonal

from pml_htl import ClassStatistics, HierarchicalClassTree
from pml_htl.tree import hierarchical_class_tree
from pml_htl.tree.linkage import DenseBackend, NeighborListBackend, agglomerate, cut_levels


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


def neighbor_list_tree(monkeypatch, statistics, **kwargs):
    monkeypatch.setattr(hierarchical_class_tree, "AVERAGE_DENSE_MAX_CLASSES", 1)
    try:
        return HierarchicalClassTree(statistics, **kwargs)
    finally:
        monkeypatch.undo()


def dense_merges(statistics, dtype=torch.float64):
    """Average linkage by Lance-Williams on the full matrix, from the statistics."""
    mu = statistics.sums / statistics.counts[:, None]
    q = statistics.squared_norms / statistics.counts
    D = (q[:, None] + q[None, :] - 2 * mu @ mu.T).clamp(min=0).to(dtype)
    return agglomerate(DenseBackend(D, statistics.counts, "average"), statistics.num_classes)


def assert_same_tree(lists, dense):
    assert torch.equal(lists.level_assignments, dense.level_assignments)
    np.testing.assert_allclose(
        np.sort(lists.merges[:, 2].numpy()), np.sort(dense.merges[:, 2].numpy()), rtol=1e-9
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_neighbor_lists_match_dense_and_scipy(monkeypatch, seed):
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
def test_neighbor_lists_unequal_sizes_vs_naive_agglomeration(monkeypatch, seed):
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
def test_any_list_width_gives_the_dense_tree(width):
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
def test_neighbor_lists_few_classes(monkeypatch, num_classes):
    stats, _, _ = clustered_statistics(num_classes, seed=num_classes)
    assert_same_tree(neighbor_list_tree(monkeypatch, stats), HierarchicalClassTree(stats))


def test_neighbor_lists_identical_classes(monkeypatch):
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
    mu = stats.sums / stats.counts[:, None]
    rows = torch.arange(0, 4200, 97)
    d = tree._class_distance_block(rows, None)
    d[torch.arange(len(rows)), rows] = float("inf")
    got = d.gather(1, tree.neighbors[rows])
    np.testing.assert_allclose(got.numpy(), d.topk(64, largest=False).values.numpy(), rtol=1e-5)
    assert mu.shape == (4200, 8)


def test_single_linkage_without_room_for_a_matrix_says_so(monkeypatch):
    stats, _, _ = clustered_statistics(20)
    monkeypatch.setattr(hierarchical_class_tree, "DENSE_MAX_BYTES", 0)
    with pytest.raises(ValueError, match="linkage='average'"):
        HierarchicalClassTree(stats, linkage="single")
