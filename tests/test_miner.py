import pytest
import torch
from pytorch_metric_learning.distances import CosineSimilarity, LpDistance

from pml_htl import HierarchicalClassTree, WiringWarning, miners


def make_tree(num_classes=6, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_classes).repeat_interleave(7)
    emb = torch.randn(num_classes, dim, generator=g).repeat_interleave(7, 0)
    emb = emb + 0.8 * torch.randn(emb.shape, generator=g)
    return HierarchicalClassTree.from_embeddings(emb, labels)


def naive_violating(emb, labels, ref, ref_labels, tree, beta, kind, same_set):
    x = torch.nn.functional.normalize(emb.double(), dim=1)
    r = torch.nn.functional.normalize(ref.double(), dim=1)
    found = set()
    for a in range(len(x)):
        for p in range(len(r)):
            if labels[a] != ref_labels[p] or (same_set and a == p):
                continue
            for n in range(len(r)):
                if ref_labels[n] == labels[a]:
                    continue
                ya, yn = labels[a : a + 1], ref_labels[n : n + 1]
                alpha = float(beta + tree.merge_distance(ya, yn) - tree.spread(ya))
                if kind == "cos":
                    v = float(x[a] @ r[n] - x[a] @ r[p]) + alpha / 2
                else:
                    dap = float(((x[a] - r[p]) ** 2).sum())
                    dan = float(((x[a] - r[n]) ** 2).sum())
                    if kind == "plain":
                        dap, dan = dap**0.5, dan**0.5
                    v = dap - dan + alpha
                if v > 0:
                    found.add((a, p, n))
    return found


@pytest.mark.parametrize(
    "kind,distance",
    [("squared", None), ("plain", LpDistance(power=1)), ("cos", CosineSimilarity())],
)
@pytest.mark.parametrize("beta", [0.1, 0.6])
def test_miner_matches_loop(kind, distance, beta):
    tree = make_tree()
    torch.manual_seed(1)
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 3, 4, 4, 5])
    emb = torch.randn(len(labels), 8, dtype=torch.float64)
    kwargs = {} if distance is None else {"distance": distance}
    miner = miners.HierarchicalTripletMiner(tree=tree, beta=beta, **kwargs)
    a, p, n = miner(emb, labels)
    got = set(zip(a.tolist(), p.tolist(), n.tolist()))
    assert len(got) == len(a)
    expected = naive_violating(emb, labels, emb, labels, tree, beta, kind, same_set=True)
    assert got == expected
    assert len(expected) > 0


def test_miner_with_ref_emb_and_small_chunks():
    tree = make_tree()
    torch.manual_seed(2)
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 0, 1])
    ref_labels = torch.tensor([0, 0, 1, 2, 3, 3, 4, 5, 5, 1])
    emb = torch.randn(len(labels), 8, dtype=torch.float64)
    ref = torch.randn(len(ref_labels), 8, dtype=torch.float64)
    miner = miners.HierarchicalTripletMiner(tree=tree, max_elements=5)
    a, p, n = miner(emb, labels, ref, ref_labels)
    got = set(zip(a.tolist(), p.tolist(), n.tolist()))
    expected = naive_violating(emb, labels, ref, ref_labels, tree, 0.1, "squared", False)
    assert got == expected and len(got) == len(a)


def test_miner_without_tree_uses_beta_and_empty_output():
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


def test_miner_output_drives_pml_loss():
    from pml_htl import losses

    tree = make_tree()
    labels = torch.arange(6).repeat_interleave(3)
    emb = torch.randn(len(labels), 8, requires_grad=True)
    triplets = miners.HierarchicalTripletMiner(tree=tree)(emb, labels)
    loss = losses.TripletMarginLoss(margin=0.1)(emb, labels, triplets)
    loss.backward()
    assert torch.isfinite(emb.grad).all()


def test_miner_bad_input():
    miner = miners.HierarchicalTripletMiner(tree=make_tree())
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
