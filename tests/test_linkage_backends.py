"""The matrix-free average linkage gives the same tree as the dense one and scipy."""

import numpy as np
import pytest
import torch

from pml_htl import ClassStatistics, HierarchicalClassTree
from pml_htl.tree import hierarchical_class_tree


def clustered_statistics(num_classes, dim=16, per_class=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    supers = torch.randn(6, dim, generator=g)
    centers = supers[torch.randint(6, (num_classes,), generator=g)]
    centers = centers + 0.5 * torch.randn(num_classes, dim, generator=g)
    x = centers.repeat_interleave(per_class, 0) + 0.4 * torch.randn(
        num_classes * per_class, dim, generator=g
    )
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    return ClassStatistics.from_embeddings(x, labels), x, labels


@pytest.mark.parametrize("seed", [0, 1])
def test_statistics_backend_matches_dense_and_scipy(monkeypatch, seed):
    from scipy.cluster.hierarchy import cophenet, linkage
    from scipy.spatial.distance import squareform

    stats, x, labels = clustered_statistics(150, seed=seed)
    dense = HierarchicalClassTree(stats)
    monkeypatch.setattr(hierarchical_class_tree, "DENSE_MAX_BYTES", 0)
    matrix_free = HierarchicalClassTree(stats)
    assert torch.equal(dense.level_assignments, matrix_free.level_assignments)
    assert torch.equal(dense.neighbors, matrix_free.neighbors)
    heights = np.sort(matrix_free.merges[:, 2].numpy())
    np.testing.assert_allclose(np.sort(dense.merges[:, 2].numpy()), heights, rtol=1e-9)

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
    thresholds = matrix_free.thresholds.numpy()
    expected = (coph[:, :, None] >= thresholds[None, None, :]).sum(-1).clip(max=16)
    ul = torch.arange(C)
    got = matrix_free.merge_level(ul[:, None], ul[None, :]).numpy()
    off = ~np.eye(C, dtype=bool)
    assert (got[off] == expected[off]).all()


def test_single_linkage_without_room_for_a_matrix_says_so(monkeypatch):
    stats, _, _ = clustered_statistics(20)
    monkeypatch.setattr(hierarchical_class_tree, "DENSE_MAX_BYTES", 0)
    with pytest.raises(ValueError, match="linkage='average'"):
        HierarchicalClassTree(stats, linkage="single")
