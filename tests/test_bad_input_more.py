"""Bad input found in review: each gets a clear error and changes nothing."""

import numpy as np
import pytest
import torch

from pml_htl import HierarchicalClassTree, samplers


@pytest.fixture
def tree():
    g = torch.Generator().manual_seed(0)
    return HierarchicalClassTree.from_embeddings(
        torch.randn(40, 6, generator=g), torch.arange(8).repeat(5)
    )


def test_numpy_scalars_are_accepted():
    s = samplers.AnchorNeighborSampler(np.arange(16) % 4, np.int64(1), 2, 2, seed=np.int64(3))
    assert s.batch_size == 4 and s.seed == 3


def test_tree_on_another_device_says_so(tree):
    with pytest.raises(ValueError, match="tree.to"):
        tree.spread(torch.zeros(2, dtype=torch.long, device="meta"))
    assert tree.to("cpu") is tree
