"""TreeRebuildHook: rebuilds the class tree from a pass over the data set and hands it to
every consumer, in a plain loop and in PML trainers."""

import logging

import numpy as np
import pytest
import torch
from pytorch_metric_learning import trainers

from pml_htl import ClassStatistics, HierarchicalClassTree, losses, miners, samplers, tree_hooks
from pml_htl.tree import TreeConsumerMixin

logging.getLogger("PML").setLevel(logging.WARNING)


def make_models(seed=0):
    torch.manual_seed(seed)
    trunk = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Dropout(0.1))
    embedder = torch.nn.Linear(16, 8)
    return trunk, embedder


def test_rebuild_in_a_plain_loop_matches_brute_force(blob_dataset, device):
    trunk, embedder = make_models()
    model = torch.nn.Sequential(trunk, embedder).to(device).train()
    loss = losses.HierarchicalTripletLoss()
    hook = tree_hooks.TreeRebuildHook(blob_dataset, consumers=[loss], batch_size=7, progress=False)
    assert loss.drop_in is False  # registering turns drop-in off
    tree = hook.rebuild(model)
    assert tree.device.type == device.type  # built where the model is
    assert model.training  # the previous mode is restored
    assert loss.tree is tree and hook.tree is tree
    with torch.no_grad():
        model.eval()
        emb = model(blob_dataset.data.to(device)).cpu()
        emb = torch.nn.functional.normalize(emb.double(), dim=1)
    labels = torch.as_tensor(blob_dataset.labels)
    for c in np.unique(blob_dataset.labels)[:4]:
        xc = emb[labels == c]
        pair = ((xc[:, None] - xc[None]) ** 2).sum(-1)
        n = len(xc)
        expected = float(pair.sum() / (n * n - n))
        spread = tree.spread(torch.tensor([int(c)], device=device))
        assert float(spread) == pytest.approx(expected, rel=1e-9)


def test_label_fn_maps_the_tree_labels(blob_dataset):
    model = torch.nn.Sequential(*make_models())
    hook = tree_hooks.TreeRebuildHook(blob_dataset, progress=False)
    tree = hook.rebuild(model, label_fn=lambda y: (y - 100) // 3)
    assert tree.labels.tolist() == list(range(12))


def test_trainer_two_epochs_every_consumer_gets_each_new_tree(blob_dataset, device):
    trunk, embedder = (m.to(device) for m in make_models())
    loss = losses.HierarchicalTripletLoss()
    miner = miners.HierarchicalTripletMiner()
    sampler = samplers.AnchorNeighborSampler(blob_dataset.labels, 2, 2, 4, seed=0)
    hook = tree_hooks.TreeRebuildHook(
        blob_dataset, consumers=[loss, miner, sampler], progress=False
    )
    seen = []

    def record(trainer):
        seen.append((hook.tree, loss.tree, miner.tree, sampler.tree, trainer.epoch))
        return True

    trainer = trainers.MetricLossOnly(
        models={"trunk": trunk, "embedder": embedder},
        optimizers={
            "trunk_optimizer": torch.optim.SGD(trunk.parameters(), lr=0.1),
            "embedder_optimizer": torch.optim.SGD(embedder.parameters(), lr=0.1),
        },
        batch_size=sampler.batch_size,
        loss_funcs={"metric_loss": loss},
        mining_funcs={"tuple_miner": miner},
        dataset=blob_dataset,
        sampler=sampler,
        end_of_epoch_hook=tree_hooks.chain_hooks(hook, record),
        set_min_label_to_zero=True,
        dataset_labels=blob_dataset.labels,
        dataloader_num_workers=0,
        data_device=device,
    )
    assert hook(trainer) is True  # the initial tree, before the first epoch
    initial = hook.tree
    assert initial.device.type == device.type
    assert initial.labels.tolist() == list(range(12))  # the trainer's remapped labels
    trainer.train(num_epochs=2)
    assert hook.num_rebuilds == 3
    assert [s[4] for s in seen] == [1, 2]
    trees = [s[0] for s in seen]
    assert trees[0] is not initial and trees[1] is not trees[0]
    for tree, *held, _ in seen:
        assert all(h is tree for h in held)
    # the models were trained, so the second tree's statistics differ from the first
    assert not torch.equal(trees[0].spreads, trees[1].spreads)
    assert trunk.training  # trainer mode preserved across the hook


def test_chain_hooks_stops_when_any_hook_says_false():
    calls = []
    chained = tree_hooks.chain_hooks(lambda t: calls.append(1), lambda t: False)
    assert chained(None) is False and calls == [1]
    assert tree_hooks.chain_hooks(lambda t: None, lambda t: True)(None) is True


def test_failed_hand_out_leaves_every_consumer_unchanged(blob_dataset, device):
    model = torch.nn.Sequential(*make_models()).to(device)
    old = HierarchicalClassTree(
        ClassStatistics.from_embeddings(
            torch.randn(20, 8, device=device), torch.arange(4, device=device).repeat(5)
        )
    )
    loss = losses.HierarchicalTripletLoss(tree=old)
    # a sampler whose classes the new tree does not know makes the hand-out fail
    sampler = samplers.AnchorNeighborSampler(np.arange(40) % 8 + 1000, 1, 2, 2)
    hook = tree_hooks.TreeRebuildHook(blob_dataset, consumers=[loss, sampler], progress=False)
    with pytest.raises(ValueError, match="not in the class tree"):
        hook.rebuild(model)
    assert loss.tree is old and sampler.tree is None and sampler.neighbors is None
    assert hook.tree is None and hook.num_rebuilds == 0


def test_bad_dataset_consumers_or_batch_size_are_refused(blob_dataset):
    with pytest.raises(ValueError, match="dataset is empty"):
        tree_hooks.TreeRebuildHook(torch.utils.data.TensorDataset(torch.zeros(0, 3)))
    with pytest.raises(TypeError, match="consumers"):
        tree_hooks.TreeRebuildHook(blob_dataset, consumers=[object()])
    with pytest.raises(ValueError, match="batch_size"):
        tree_hooks.TreeRebuildHook(blob_dataset, batch_size=0)
    with pytest.raises(TypeError, match="dataset"):
        tree_hooks.TreeRebuildHook(42)


def test_pml_save_and_load_model_restores_trees(blob_dataset, tmp_path):
    """HookContainer saves loss_funcs and mining_funcs with c_f.save_model and
    reloads them with weights-only torch.load: the trees must survive."""
    from pytorch_metric_learning.utils import common_functions as c_f

    model = torch.nn.Sequential(*make_models())
    loss = losses.HierarchicalTripletLoss()
    miner = miners.HierarchicalTripletMiner()
    tree_hooks.TreeRebuildHook(blob_dataset, consumers=[loss, miner], progress=False).rebuild(model)
    c_f.save_model(loss, str(tmp_path / "loss.pth"))
    c_f.save_model(miner, str(tmp_path / "miner.pth"))
    loss2, miner2 = losses.HierarchicalTripletLoss(), miners.HierarchicalTripletMiner()
    c_f.load_model(loss2, str(tmp_path / "loss.pth"), "cpu")
    c_f.load_model(miner2, str(tmp_path / "miner.pth"), "cpu")
    assert loss2.drop_in is False
    emb = torch.randn(24, 8)
    labels = torch.as_tensor(blob_dataset.labels[::5])
    assert torch.equal(loss(emb, labels), loss2(emb, labels))
    for x, y in zip(miner(emb, labels), miner2(emb, labels)):
        assert torch.equal(x, y)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_levels=0), "num_levels"),
        (dict(linkage="ward"), "linkage"),
        (dict(level_start=2), "level_start"),
    ],
)
def test_bad_tree_options_are_refused_at_construction(blob_dataset, kwargs, match):
    """Before a whole embedding pass over the training set, not after it."""
    with pytest.raises(ValueError, match=match):
        tree_hooks.TreeRebuildHook(blob_dataset, progress=False, **kwargs)


def batch_norm_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 16), torch.nn.BatchNorm1d(16), torch.nn.Linear(16, 8)
    )


def test_rebuild_restores_every_submodule_mode(blob_dataset):
    """A frozen BatchNorm (in eval mode inside a model in train mode) stays frozen."""
    model = batch_norm_model().train()
    model[1].eval()
    before = {name: m.training for name, m in model.named_modules()}
    tree_hooks.TreeRebuildHook(blob_dataset, progress=False).rebuild(model)
    after = {name: m.training for name, m in model.named_modules()}
    assert after == before


class RefusingConsumer(TreeConsumerMixin):
    """Takes trees until told to refuse them."""

    tree = None
    refuse = False

    def update_tree(self, tree, label_fn=None):
        if self.refuse:
            raise RuntimeError("consumer refused the tree")
        self.tree = tree


def test_failed_hand_out_with_label_fn_restores_the_sampler(blob_dataset):
    """When a consumer refuses the new tree, its error is raised and every
    consumer is back on the old tree, the sampler too when its labels go
    through a label_fn (a trainer's set_min_label_to_zero)."""
    model = batch_norm_model()
    loss = losses.HierarchicalTripletLoss()
    sampler = samplers.AnchorNeighborSampler(blob_dataset.labels, 2, 2, 2, seed=0)
    refuses = RefusingConsumer()
    hook = tree_hooks.TreeRebuildHook(
        blob_dataset, consumers=[loss, sampler, refuses], progress=False
    )

    def label_fn(y):
        return (torch.as_tensor(np.asarray(y)) - 100) // 3

    old = hook.rebuild(model, label_fn=label_fn)
    old_neighbors = sampler.neighbors.copy()
    refuses.refuse = True
    with torch.no_grad():
        model[0].weight.add_(1.0)  # a different tree next time
    with pytest.raises(RuntimeError, match="consumer refused"):
        hook.rebuild(model, label_fn=label_fn)
    assert loss.tree is old
    assert sampler.tree is old
    np.testing.assert_array_equal(sampler.neighbors, old_neighbors)


class TwoLevelBlobs(torch.utils.data.Dataset):
    """Blob data with 2-D labels [super class, class], as PML's
    label_hierarchy_level expects."""

    def __init__(self, base):
        self.base = base
        self.labels = np.stack([base.labels // 9, base.labels], 1)

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        return self.base.data[i], torch.as_tensor(self.labels[i])


def test_trainer_label_hierarchy_level_gives_a_tree_of_that_level(blob_dataset):
    """With a trainer's label_hierarchy_level, the tree is over the labels of
    that level (those the loss sees), and the sampler of 1-D class labels
    takes it."""
    ds = TwoLevelBlobs(blob_dataset)
    torch.manual_seed(0)
    trunk, embedder = torch.nn.Linear(6, 16), torch.nn.Linear(16, 8)
    loss = losses.HierarchicalTripletLoss()
    sampler = samplers.AnchorNeighborSampler(ds.labels[:, 1], 2, 2, 4, seed=0)
    hook = tree_hooks.TreeRebuildHook(ds, consumers=[loss, sampler], progress=False)
    trainer = trainers.MetricLossOnly(
        models={"trunk": trunk, "embedder": embedder},
        optimizers={"trunk_optimizer": torch.optim.SGD(trunk.parameters(), lr=0.1)},
        batch_size=sampler.batch_size,
        loss_funcs={"metric_loss": loss},
        dataset=ds,
        sampler=sampler,
        label_hierarchy_level=1,
        end_of_epoch_hook=hook,
        dataloader_num_workers=0,
        data_device=torch.device("cpu"),  # PML's default is CUDA where there is one
    )
    hook(trainer)
    assert sampler.tree is hook.tree and loss.tree is hook.tree
    assert sorted(hook.tree.labels.tolist()) == sorted(set(ds.labels[:, 1].tolist()))
