"""AnchorNeighborSampler: batches of anchor classes and their nearest classes in the tree."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from pml_htl import HierarchicalClassTree, samplers


def make_data(num_classes=10, per_class=6, dim=5, seed=0, offset=50):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_classes).repeat_interleave(per_class) * 2 + offset
    emb = torch.randn(num_classes, dim, generator=g).repeat_interleave(per_class, 0)
    emb = emb + 0.5 * torch.randn(emb.shape, generator=g)
    return emb, labels


def brute_force_class_distance(emb, labels, p, q):
    x = torch.nn.functional.normalize(emb.double(), dim=1)
    xp, xq = x[labels == p], x[labels == q]
    return float(((xp[:, None] - xq[None]) ** 2).sum(-1).mean())


def batches_of(sampler):
    idx = np.array(list(iter(sampler)))
    return idx.reshape(-1, sampler.batch_size)


def test_without_tree_like_m_per_class():
    _, labels = make_data()
    s = samplers.AnchorNeighborSampler(labels, 2, 2, 3, length_before_new_iter=120, seed=0)
    assert s.batch_size == 12 and len(s) == 120
    lab = labels.numpy()
    for batch in batches_of(s):
        classes = lab[batch].reshape(4, 3)
        assert (classes == classes[:, :1]).all()  # t consecutive samples of one class
        assert len(set(classes[:, 0])) == 4  # l' m distinct classes


def test_neighbours_are_the_nearest_classes_at_level_0(device):
    emb, labels = make_data()
    tree = HierarchicalClassTree.from_embeddings(emb.to(device), labels.to(device))
    assert tree.device.type == device.type
    m, lp, t = 3, 2, 2
    s = samplers.AnchorNeighborSampler(labels, lp, m, t, tree=tree, seed=1)
    classes = sorted(set(labels.tolist()))
    order = {
        c: sorted(
            (q for q in classes if q != c),
            key=lambda q: brute_force_class_distance(emb, labels, c, q),
        )
        for c in classes
    }
    lab = labels.numpy()
    for batch in batches_of(s):
        batch_classes = lab[batch][::t].tolist()
        assert len(set(batch_classes)) == lp * m
        used = set()
        for g in range(lp):
            group = batch_classes[g * m : (g + 1) * m]
            anchor = group[0]
            used.add(anchor)
            expected = [q for q in order[anchor] if q not in used][: m - 1]
            assert group[1:] == expected
            used.update(expected)


def test_label_fn_maps_to_tree_labels(device):
    emb, labels = make_data()
    mapped = (labels - 50) // 2  # as a trainer's set_min_label_to_zero would
    tree = HierarchicalClassTree.from_embeddings(emb.to(device), mapped.to(device))
    s = samplers.AnchorNeighborSampler(labels, 2, 3, 2, seed=0)
    with pytest.raises(ValueError, match="not in the class tree"):
        s.update_tree(tree)
    assert s.tree is None and s.neighbors is None
    s.update_tree(tree, label_fn=lambda y: (np.asarray(y) - 50) // 2)
    ref = samplers.AnchorNeighborSampler(mapped, 2, 3, 2, tree=tree, seed=0)
    np.testing.assert_array_equal(s.neighbors, ref.neighbors)


def test_reproducible_under_seed_and_set_epoch():
    emb, labels = make_data()
    tree = HierarchicalClassTree.from_embeddings(emb, labels)
    a = samplers.AnchorNeighborSampler(labels, 2, 2, 2, tree=tree, seed=7)
    b = samplers.AnchorNeighborSampler(labels, 2, 2, 2, tree=tree, seed=7)
    first_a, first_b = list(a), list(b)
    assert first_a == first_b
    second_a = list(a)
    assert second_a != first_a  # a new pass gives new batches
    a.set_epoch(0)
    assert list(a) == first_a
    torch.manual_seed(0)
    c = list(samplers.AnchorNeighborSampler(labels, 2, 2, 2, tree=tree))
    torch.manual_seed(0)
    d = list(samplers.AnchorNeighborSampler(labels, 2, 2, 2, tree=tree))
    assert c == d


def test_small_classes_sampled_with_replacement_and_dataloader():
    labels = np.array([0] * 2 + [1] * 5 + [2] * 1 + [3] * 4)
    s = samplers.AnchorNeighborSampler(labels, 1, 4, 3, length_before_new_iter=24, seed=0)
    data = torch.arange(len(labels))
    loader = DataLoader(data, batch_size=s.batch_size, sampler=s, drop_last=True)
    batches = list(loader)
    assert len(batches) == 2
    for batch in batches:
        assert sorted(set(labels[batch.numpy()].tolist())) == [0, 1, 2, 3]
        counts = np.bincount(labels[batch.numpy()], minlength=4)
        assert (counts == 3).all()


def test_impossible_configurations_fail_at_construction():
    _, labels = make_data(num_classes=5)
    with pytest.raises(ValueError, match="classes per batch"):
        samplers.AnchorNeighborSampler(labels, 2, 3, 2)
    with pytest.raises(ValueError, match="length_before_new_iter"):
        samplers.AnchorNeighborSampler(labels, 1, 2, 4, length_before_new_iter=7)
    with pytest.raises(ValueError, match="anchors_per_batch"):
        samplers.AnchorNeighborSampler(labels, 0, 2, 2)
    with pytest.raises(TypeError, match="samples_per_class"):
        samplers.AnchorNeighborSampler(labels, 1, 2, 2.5)
    with pytest.raises(ValueError, match="empty"):
        samplers.AnchorNeighborSampler([], 1, 2, 2)
    with pytest.raises(TypeError, match="labels"):
        samplers.AnchorNeighborSampler(np.array([0.5, 1.5]), 1, 2, 2)
    with pytest.raises(ValueError, match="labels"):
        samplers.AnchorNeighborSampler(np.zeros((4, 2), dtype=int), 1, 2, 2)
    with pytest.raises(TypeError, match="tree"):
        samplers.AnchorNeighborSampler(labels, 1, 2, 2, tree=object())


def test_numpy_scalars_are_accepted():
    s = samplers.AnchorNeighborSampler(np.arange(16) % 4, np.int64(1), 2, 2, seed=np.int64(3))
    assert s.batch_size == 4 and s.seed == 3
