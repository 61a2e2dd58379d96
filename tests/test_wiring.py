"""HTL's pieces wired together wrongly: a warning or an error that says how to
fix it, never silent training on beta margins or split batches."""

import logging

import pytest
import torch
from pytorch_metric_learning import trainers

from pml_htl import HierarchicalClassTree, WiringWarning, losses, miners, samplers, tree_hooks

logging.getLogger("PML").setLevel(logging.WARNING)


def make_models(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU()), torch.nn.Linear(16, 8)


def make_trainer(dataset, loss, sampler, batch_size=None, miner=None, hook=None):
    trunk, embedder = make_models()
    return trainers.MetricLossOnly(
        models={"trunk": trunk, "embedder": embedder},
        optimizers={
            "trunk_optimizer": torch.optim.SGD(trunk.parameters(), lr=0.1),
            "embedder_optimizer": torch.optim.SGD(embedder.parameters(), lr=0.1),
        },
        batch_size=batch_size or sampler.batch_size,
        loss_funcs={"metric_loss": loss},
        mining_funcs={} if miner is None else {"tuple_miner": miner},
        dataset=dataset,
        sampler=sampler,
        end_of_epoch_hook=hook,
        dataloader_num_workers=0,
        data_device=torch.device("cpu"),  # PML's default is CUDA where there is one
    )


def blob_tree(dataset, **kwargs):
    return HierarchicalClassTree.from_embeddings(
        dataset.data, torch.as_tensor(dataset.labels), **kwargs
    )


# ----------------------------------------------------------- no tree yet
def test_training_without_the_initial_rebuild_warns(blob_dataset):
    """Forgetting hook(trainer) before train(): the first epoch would run on
    random batches and beta margins."""
    loss = losses.HierarchicalTripletLoss()
    sampler = samplers.AnchorNeighborSampler(blob_dataset.labels, 2, 2, 4, seed=0)
    hook = tree_hooks.TreeRebuildHook(blob_dataset, consumers=[loss, sampler])
    trainer = make_trainer(blob_dataset, loss, sampler, hook=hook)
    with pytest.warns(WiringWarning, match="has not built a tree yet") as caught:
        trainer.train(num_epochs=1)
    warned = {str(w.message).split()[0] for w in caught if w.category is WiringWarning}
    assert warned == {"AnchorNeighborSampler", "HierarchicalTripletLoss"}
    assert hook.num_rebuilds == 1  # the end of the epoch built one


def test_with_the_initial_rebuild_nothing_warns(blob_dataset):
    """The correct wiring (pyproject turns WiringWarning into an error)."""
    loss = losses.HierarchicalTripletLoss()
    miner = miners.HierarchicalTripletMiner()
    sampler = samplers.AnchorNeighborSampler(blob_dataset.labels, 2, 2, 4, seed=0)
    hook = tree_hooks.TreeRebuildHook(blob_dataset, consumers=[loss, miner, sampler])
    trainer = make_trainer(blob_dataset, loss, sampler, miner=miner, hook=hook)
    hook(trainer)
    trainer.train(num_epochs=1)
    assert hook.num_rebuilds == 2


def test_loss_without_tree_and_without_drop_in_warns_once():
    loss = losses.HierarchicalTripletLoss(tree_update_interval=None)
    x, y = torch.randn(8, 4), torch.arange(4).repeat(2)
    with pytest.warns(WiringWarning, match="flat beta") as caught:
        loss(x, y)
        loss(x, y)
    assert len([w for w in caught if w.category is WiringWarning]) == 1


def test_drop_in_loss_does_not_warn():
    loss = losses.HierarchicalTripletLoss(tree_update_interval=2)
    for _ in range(3):
        loss(torch.randn(8, 4), torch.arange(4).repeat(2))
    assert loss.tree is not None


# ----------------------------------------------------------- the miner
def test_miner_without_any_tree_warns():
    with pytest.warns(WiringWarning, match="tree_source=loss"):
        miners.HierarchicalTripletMiner()(torch.randn(8, 4), torch.arange(4).repeat(2))


def test_miner_follows_a_drop_in_loss_tree():
    """tree_source=loss: the miner mines with the loss's own drop-in trees, the
    same triplets as a miner handed that tree, with beta for unseen classes."""
    loss = losses.HierarchicalTripletLoss(tree_update_interval=2)
    follower = miners.HierarchicalTripletMiner(tree_source=loss)
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(4).repeat(3)
    for _ in range(2):
        loss(torch.randn(12, 4, generator=g), labels)
    assert loss.tree is not None
    x = torch.randn(12, 4, generator=g)
    got = follower(x, labels)
    want = miners.HierarchicalTripletMiner(tree=loss.tree)(x, labels)
    for a, b in zip(got, want):
        assert torch.equal(a, b)
    assert len(got[0]) > 0
    # a class the loss's tree has not seen yet gets beta, as in the loss: with
    # classes 0 and 9 every anchor-negative pair involves 9, so all margins are beta
    new_labels = torch.tensor([0, 0, 9, 9, 0, 9])
    x = torch.randn(6, 4, generator=g)
    got = follower(x, new_labels)
    with pytest.warns(WiringWarning):
        want = miners.HierarchicalTripletMiner()(x, new_labels)
    for a, b in zip(got, want):
        assert torch.equal(a, b)


def test_miner_tree_source_must_hold_a_tree_attribute():
    with pytest.raises(TypeError, match="tree_source"):
        miners.HierarchicalTripletMiner(tree_source=object())
    tree = HierarchicalClassTree.from_embeddings(torch.randn(8, 3), torch.arange(4).repeat(2))
    with pytest.raises(ValueError, match="not both"):
        miners.HierarchicalTripletMiner(tree=tree, tree_source=losses.HierarchicalTripletLoss())


# ----------------------------------------------------------- the trainer
def test_trainer_batch_size_that_splits_the_groups_is_an_error(blob_dataset):
    loss = losses.HierarchicalTripletLoss()
    sampler = samplers.AnchorNeighborSampler(blob_dataset.labels, 2, 2, 4, seed=0)
    hook = tree_hooks.TreeRebuildHook(blob_dataset, consumers=[loss, sampler])
    trainer = make_trainer(blob_dataset, loss, sampler, batch_size=12, hook=hook)
    with pytest.raises(ValueError, match="batch_size=sampler.batch_size"):
        hook(trainer)
    assert hook.num_rebuilds == 0


def test_trainer_with_another_sampler_or_loss_warns(blob_dataset):
    loss = losses.HierarchicalTripletLoss()
    sampler = samplers.AnchorNeighborSampler(blob_dataset.labels, 2, 2, 4, seed=0)
    hook = tree_hooks.TreeRebuildHook(blob_dataset, consumers=[loss, sampler])
    other_sampler = samplers.AnchorNeighborSampler(blob_dataset.labels, 2, 2, 4, seed=1)
    other_loss = losses.HierarchicalTripletLoss()
    trainer = make_trainer(blob_dataset, other_loss, other_sampler, hook=hook)
    with pytest.warns(WiringWarning) as caught:
        hook(trainer)
    text = " ".join(str(w.message) for w in caught)
    assert "another sampler" in text and "never receives the tree" in text


def test_a_loss_wrapped_by_cross_batch_memory_counts_as_used(blob_dataset):
    loss = losses.HierarchicalTripletLoss()
    sampler = samplers.AnchorNeighborSampler(blob_dataset.labels, 2, 2, 4, seed=0)
    hook = tree_hooks.TreeRebuildHook(blob_dataset, consumers=[loss, sampler])
    wrapped = losses.CrossBatchMemory(loss, embedding_size=8, memory_size=32)
    hook(make_trainer(blob_dataset, wrapped, sampler, hook=hook))  # no warning


# ----------------------------------------------------------- tree options
@pytest.mark.parametrize(
    "option, value", [("num_levels", 8), ("linkage", "single"), ("level_start", 1)]
)
def test_saved_tree_with_other_options_is_refused_naming_the_option(blob_dataset, option, value):
    source = losses.HierarchicalTripletLoss(tree=blob_tree(blob_dataset, **{option: value}))
    target = losses.HierarchicalTripletLoss()
    with pytest.raises(ValueError, match=option):
        target.load_state_dict(source.state_dict())
    assert target.tree is None and target.drop_in  # nothing half-loaded
    same = losses.HierarchicalTripletLoss(**{option: value})
    same.load_state_dict(source.state_dict())
    assert same.tree is not None


def test_loss_takes_its_tree_options_from_the_tree_it_is_given(blob_dataset):
    tree = blob_tree(blob_dataset, num_levels=8, linkage="complete")
    loss = losses.HierarchicalTripletLoss(tree=tree)
    assert loss.tree_options == {"num_levels": 8, "linkage": "complete", "level_start": 0}
    with pytest.raises(ValueError, match="num_levels=4 was given"):
        losses.HierarchicalTripletLoss(tree=tree, num_levels=4)


def test_hook_builds_with_the_registered_loss_options(blob_dataset):
    model = torch.nn.Sequential(*make_models())
    loss = losses.HierarchicalTripletLoss(num_levels=5, linkage="single")
    hook = tree_hooks.TreeRebuildHook(blob_dataset, consumers=[loss])
    tree = hook.rebuild(model)
    assert (tree.num_levels, tree.linkage) == (5, "single") and loss.tree is tree
    with pytest.raises(ValueError, match="linkage"):
        tree_hooks.TreeRebuildHook(blob_dataset, consumers=[loss], linkage="average")
    other = losses.HierarchicalTripletLoss(num_levels=6)
    with pytest.raises(ValueError, match="num_levels"):
        hook.register(other)
    assert hook.consumers == [loss] and not other.awaits_hook_tree  # all or nothing


def test_update_tree_with_other_options_is_refused(blob_dataset):
    loss = losses.HierarchicalTripletLoss()
    with pytest.raises(ValueError, match="linkage"):
        loss.update_tree(blob_tree(blob_dataset, linkage="single"))
    assert loss.tree is None and loss.drop_in


# ----------------------------------------------------------- beta
@pytest.mark.parametrize("beta", [-1.0, -0.01, 4.5])
def test_unreasonable_beta_is_refused(beta):
    for make in (losses.HierarchicalTripletLoss, miners.HierarchicalTripletMiner):
        with pytest.raises(ValueError, match=r"beta must lie in \[0, 4\]"):
            make(beta=beta)


# ----------------------------------------------------------- logging
def test_each_tree_build_logs_one_line(blob_dataset, caplog):
    model = torch.nn.Sequential(*make_models())
    hook = tree_hooks.TreeRebuildHook(blob_dataset)
    with caplog.at_level(logging.INFO, logger="pml_htl"):
        tree = hook.rebuild(model)
        loss = losses.HierarchicalTripletLoss(tree_update_interval=1)
        loss(torch.randn(8, 4), torch.arange(4).repeat(2))
    lines = [r.getMessage() for r in caplog.records if r.name == "pml_htl"]
    assert len(lines) == 2
    assert lines[0].startswith("tree rebuild 1: embedded 120 samples")
    assert f"12 classes, d0 {tree.d0:.4f}" in lines[0] and "nodes per level 12" in lines[0]
    assert lines[1].startswith("drop-in class tree at iteration 1: 4 classes")


def test_wiring_warnings_point_at_the_users_line():
    loss = losses.HierarchicalTripletLoss(tree_update_interval=None)
    with pytest.warns(WiringWarning) as caught:
        loss(torch.randn(8, 4), torch.arange(4).repeat(2))
    assert [w.filename for w in caught] == [__file__]


def test_chain_hooks_skips_pml_empty_container_hooks(blob_dataset):
    """Without record-keeper, PML's get_hook_container(None) is an EmptyContainer
    whose end_of_epoch_hook(...) is None; PML's trainers accept None there."""
    from pytorch_metric_learning.utils import logging_presets

    empty = logging_presets.get_hook_container(None).end_of_epoch_hook(None, {}, "unused")
    assert empty is None
    calls = []
    chained = tree_hooks.chain_hooks(lambda trainer: calls.append(trainer), empty)
    assert chained("trainer") is True and calls == ["trainer"]
    with pytest.raises(TypeError, match="callables or None"):
        tree_hooks.chain_hooks(42)


def test_record_keeper_logs_the_loss_stats_but_not_its_options():
    """PML's HookContainer records every dict attribute of a loss: the tree
    options are not one, the collect_stats statistics are recorded."""
    loss = losses.HierarchicalTripletLoss(collect_stats=True, tree_update_interval=None)
    assert not any(isinstance(v, dict) and "linkage" in v for v in vars(loss).values())
    assert loss.tree_options == {"num_levels": 16, "linkage": "average", "level_start": 0}
    with pytest.warns(WiringWarning):
        loss(torch.randn(8, 4), torch.arange(4).repeat(2))
    assert loss.num_triplets == 8 * 1 * 6 and "num_triplets" in loss._record_these_stats
