"""HierarchicalTripletMiner against a naive loop over triplets, and its output in PML's
TripletMarginLoss."""

import pytest
import torch
from helpers import miner_tree, naive_violating
from pytorch_metric_learning.distances import CosineSimilarity, LpDistance

from pml_htl import WiringWarning, losses, miners


@pytest.mark.parametrize(
    "kind,distance",
    [("squared", None), ("plain", LpDistance(power=1)), ("cos", CosineSimilarity())],
)
@pytest.mark.parametrize("beta", [0.1, 0.6])
def test_mined_triplets_are_the_violating_ones(kind, distance, beta, device):
    tree = miner_tree()
    torch.manual_seed(1)
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 3, 4, 4, 5])
    emb = torch.randn(len(labels), 8, dtype=torch.float64)
    kwargs = {} if distance is None else {"distance": distance}
    miner = miners.HierarchicalTripletMiner(tree=tree.to(device), beta=beta, **kwargs)
    a, p, n = miner(emb.to(device), labels.to(device))
    assert a.device.type == p.device.type == n.device.type == device.type
    assert a.dtype == p.dtype == n.dtype == torch.long
    got = set(zip(a.tolist(), p.tolist(), n.tolist()))
    assert len(got) == len(a)
    expected = naive_violating(emb, labels, emb, labels, tree, beta, kind, same_set=True)
    assert got == expected
    assert len(expected) > 0


@pytest.mark.parametrize("scale", [0.0, 0.5, 1.5])
def test_mined_triplets_follow_margin_scale(scale, device):
    tree = miner_tree()
    torch.manual_seed(3)
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 3, 4, 4, 5])
    emb = torch.randn(len(labels), 8, dtype=torch.float64)
    miner = miners.HierarchicalTripletMiner(tree=tree.to(device), beta=0.1, margin_scale=scale)
    a, p, n = miner(emb.to(device), labels.to(device))
    got = set(zip(a.tolist(), p.tolist(), n.tolist()))
    want = naive_violating(emb, labels, emb, labels, tree, 0.1, "squared", True, scale=scale)
    assert got == want and len(want) > 0
    paper = naive_violating(emb, labels, emb, labels, tree, 0.1, "squared", True)
    assert want != paper  # the scale changes which triplets violate


@pytest.mark.parametrize("max_elements", [5, 25, 1 << 22])
def test_mining_against_ref_emb_in_chunks(device, max_elements):
    tree = miner_tree()
    torch.manual_seed(2)
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 0, 1])
    ref_labels = torch.tensor([0, 0, 1, 2, 3, 3, 4, 5, 5, 1])
    emb = torch.randn(len(labels), 8, dtype=torch.float64)
    ref = torch.randn(len(ref_labels), 8, dtype=torch.float64)
    miner = miners.HierarchicalTripletMiner(tree=tree.to(device), max_elements=max_elements)
    a, p, n = miner(*(x.to(device) for x in (emb, labels, ref, ref_labels)))
    got = set(zip(a.tolist(), p.tolist(), n.tolist()))
    expected = naive_violating(emb, labels, ref, ref_labels, tree, 0.1, "squared", False)
    assert got == expected and len(got) == len(a)


def test_without_tree_the_margin_is_beta():
    """Without a tree the margin is beta; mining nothing gives empty long tensors."""
    torch.manual_seed(3)
    labels = torch.tensor([0, 0, 1, 1])
    emb = torch.randn(4, 5)
    with pytest.warns(WiringWarning, match="flat margin beta"):
        miner = miners.HierarchicalTripletMiner(beta=4.0)  # every triplet violates
        a, p, n = miner(emb, labels)
    assert len(a) == 2 * 2 * 2
    # two tight, opposite clusters: no triplet violates beta = 0
    emb = torch.tensor([[1.0, 0.0], [1.0, 0.01], [-1.0, 0.0], [-1.0, 0.01]])
    with pytest.warns(WiringWarning):
        a, p, n = miners.HierarchicalTripletMiner(beta=0.0)(emb, labels)
    assert a.dtype == torch.long and len(a) == len(p) == len(n) == 0


def test_mined_triplets_drive_pml_triplet_margin_loss():
    """PML's TripletMarginLoss(margin=0.1) on the mined triplets has the value
    and gradient of a loop over them with PML's defaults: unit-length
    embeddings, Euclidean distances, the mean over triplets with a positive loss."""
    tree = miner_tree()
    labels = torch.arange(6).repeat_interleave(3)
    g = torch.Generator().manual_seed(4)
    emb = torch.randn(len(labels), 8, generator=g, dtype=torch.float64, requires_grad=True)
    a, p, n = miners.HierarchicalTripletMiner(tree=tree)(emb, labels)
    mined = list(zip(a.tolist(), p.tolist(), n.tolist()))
    x = emb.detach()
    assert len(set(mined)) == len(mined)
    assert set(mined) == naive_violating(x, labels, x, labels, tree, 0.1, "squared", True)

    loss = losses.TripletMarginLoss(margin=0.1)(emb, labels, (a, p, n))
    loss.backward()

    x = x.clone().requires_grad_(True)
    unit = x / x.norm(dim=1, keepdim=True)
    per_triplet = [
        torch.relu((unit[i] - unit[j]).norm() - (unit[i] - unit[k]).norm() + 0.1)
        for i, j, k in mined
    ]
    positive = [v for v in per_triplet if v > 0]
    assert 0 < len(positive) < len(per_triplet)  # the reducer's divisor matters
    expected = sum(positive) / len(positive)
    expected.backward()
    torch.testing.assert_close(loss.detach(), expected.detach(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(emb.grad, x.grad, rtol=1e-10, atol=1e-12)


def test_bad_labels_embeddings_beta_or_tree_are_refused():
    miner = miners.HierarchicalTripletMiner(tree=miner_tree())
    with pytest.raises(ValueError, match="labels"):
        miner(torch.randn(4, 8), torch.tensor([0, 1, 99, 1]))
    with pytest.raises(TypeError, match="labels"):
        miner(torch.randn(4, 8), torch.tensor([0.0, 1.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match="embeddings"):
        miner(torch.full((2, 8), float("nan")), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="beta"):
        miners.HierarchicalTripletMiner(beta=float("inf"))
    with pytest.raises(TypeError, match="tree"):
        miners.HierarchicalTripletMiner(tree="not a tree")


def test_unnormalised_distance_is_refused():
    with pytest.raises(TypeError, match="normalize_embeddings"):
        miners.HierarchicalTripletMiner(distance=LpDistance(power=2, normalize_embeddings=False))


def test_max_elements_below_one_is_refused():
    with pytest.raises(ValueError, match="max_elements"):
        miners.HierarchicalTripletMiner(max_elements=0)
