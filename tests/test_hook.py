import logging

import numpy as np
import pytest
import torch
from pytorch_metric_learning import trainers

from pml_htl import ClassStatistics, HierarchicalClassTree, losses, miners, samplers, tree_hooks

logging.getLogger("PML").setLevel(logging.WARNING)


def make_models(seed=0):
    torch.manual_seed(seed)
    trunk = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Dropout(0.1))
    embedder = torch.nn.Linear(16, 8)
    return trunk, embedder


def test_rebuild_in_a_plain_loop_matches_brute_force(blob_dataset):
    trunk, embedder = make_models()
    model = torch.nn.Sequential(trunk, embedder).train()
    loss = losses.HierarchicalTripletLoss()
    hook = tree_hooks.TreeRebuildHook(blob_dataset, consumers=[loss], batch_size=7, progress=False)
    assert loss.drop_in is False  # registering turns drop-in off
    tree = hook.rebuild(model)
    assert model.training  # the previous mode is restored
    assert loss.tree is tree and hook.tree is tree
    with torch.no_grad():
        model.eval()
        emb = torch.nn.functional.normalize(model(blob_dataset.data).double(), dim=1)
    labels = torch.as_tensor(blob_dataset.labels)
    for c in np.unique(blob_dataset.labels)[:4]:
        xc = emb[labels == c]
        pair = ((xc[:, None] - xc[None]) ** 2).sum(-1)
        n = len(xc)
        expected = float(pair.sum() / (n * n - n))
        assert float(tree.spread(torch.tensor([int(c)]))) == pytest.approx(expected, rel=1e-9)


def test_label_fn_applied(blob_dataset):
    model = torch.nn.Sequential(*make_models())
    hook = tree_hooks.TreeRebuildHook(blob_dataset, progress=False)
    tree = hook.rebuild(model, label_fn=lambda y: (y - 100) // 3)
    assert tree.labels.tolist() == list(range(12))


def test_trainer_two_epochs_every_consumer_gets_each_new_tree(blob_dataset):
    trunk, embedder = make_models()
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
    )
    assert hook(trainer) is True  # the initial tree, before the first epoch
    initial = hook.tree
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


def test_failed_hand_out_leaves_every_consumer_unchanged(blob_dataset):
    model = torch.nn.Sequential(*make_models())
    old = HierarchicalClassTree(
        ClassStatistics.from_embeddings(torch.randn(20, 8), torch.arange(4).repeat(5))
    )
    loss = losses.HierarchicalTripletLoss(tree=old)
    # a sampler whose classes the new tree does not know makes the hand-out fail
    sampler = samplers.AnchorNeighborSampler(np.arange(40) % 8 + 1000, 1, 2, 2)
    hook = tree_hooks.TreeRebuildHook(blob_dataset, consumers=[loss, sampler], progress=False)
    with pytest.raises(ValueError, match="not in the class tree"):
        hook.rebuild(model)
    assert loss.tree is old and sampler.tree is None and sampler.neighbors is None
    assert hook.tree is None and hook.num_rebuilds == 0


def test_hook_bad_input(blob_dataset):
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
