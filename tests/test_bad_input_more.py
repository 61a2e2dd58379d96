"""Bad input found in review: each gets a clear error and changes nothing."""

import numpy as np
import pytest
import torch
from pytorch_metric_learning.distances import CosineSimilarity, LpDistance

from pml_htl import HierarchicalClassTree, losses, miners, samplers, tree_hooks


@pytest.fixture
def tree():
    g = torch.Generator().manual_seed(0)
    return HierarchicalClassTree.from_embeddings(
        torch.randn(40, 6, generator=g), torch.arange(8).repeat(5)
    )


def test_unnormalised_distances_are_refused():
    for distance in (LpDistance(power=2, normalize_embeddings=False),):
        with pytest.raises(TypeError, match="normalize_embeddings"):
            losses.HierarchicalTripletLoss(distance=distance)
        with pytest.raises(TypeError, match="normalize_embeddings"):
            miners.HierarchicalTripletMiner(distance=distance)
    losses.HierarchicalTripletLoss(distance=CosineSimilarity())  # accepted


def test_numpy_scalars_are_accepted():
    loss = losses.HierarchicalTripletLoss(beta=np.float32(0.2), num_levels=np.int64(8))
    assert loss.beta == pytest.approx(0.2) and loss.tree_options["num_levels"] == 8
    s = samplers.AnchorNeighborSampler(np.arange(16) % 4, np.int64(1), 2, 2, seed=np.int64(3))
    assert s.batch_size == 4 and s.seed == 3


def test_indices_tuple_out_of_range_or_malformed(tree):
    loss = losses.HierarchicalTripletLoss(tree=tree)
    emb, labels = torch.randn(8, 6), torch.arange(8)
    bad = (torch.tensor([0]), torch.tensor([9]), torch.tensor([1]))
    with pytest.raises(ValueError, match="indices_tuple"):
        loss(emb, labels, bad)
    with pytest.raises(ValueError, match="indices_tuple"):
        loss(emb, labels, (torch.tensor([0, 1]), torch.tensor([1])))
    with pytest.raises(ValueError, match="equal lengths"):
        loss(emb, labels, (torch.tensor([0, 1]), torch.tensor([1]), torch.tensor([2])))
    with pytest.raises(TypeError, match="integer"):
        loss(emb, labels, (torch.tensor([0.0]), torch.tensor([1]), torch.tensor([2])))


def test_bad_state_changes_nothing(tree):
    loss = losses.HierarchicalTripletLoss(tree=tree)
    state = loss.state_dict()
    state["_extra_state"] = dict(state["_extra_state"], statistics={"labels": torch.arange(3)})
    fresh = losses.HierarchicalTripletLoss(tree_update_interval=5)
    with pytest.raises(KeyError):
        fresh.load_state_dict(state)
    assert fresh.tree is None and fresh.drop_in is True and fresh.statistics is None


def test_tree_on_another_device_says_so(tree):
    with pytest.raises(ValueError, match="tree.to"):
        tree.spread(torch.zeros(2, dtype=torch.long, device="meta"))
    assert tree.to("cpu") is tree


def test_miner_max_elements_checked():
    with pytest.raises(ValueError, match="max_elements"):
        miners.HierarchicalTripletMiner(max_elements=0)


def test_hook_checks_its_tree_options(blob_dataset):
    with pytest.raises(ValueError, match="num_levels"):
        tree_hooks.TreeRebuildHook(blob_dataset, num_levels=0)
    with pytest.raises(ValueError, match="linkage"):
        tree_hooks.TreeRebuildHook(blob_dataset, linkage="ward")
