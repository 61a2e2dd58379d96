"""TreeRebuildHook(statistics_from="training"): trees from the statistics of the
embeddings the loss saw in the training steps, checked against loops over
those embeddings, with no extra pass over the data set after the first tree."""

import logging

import numpy as np
import pytest
import torch
from helpers import assert_statistics_match, loop_statistics
from pytorch_metric_learning import trainers
from pytorch_metric_learning.utils import common_functions as c_f

from pml_htl import HierarchicalClassTree, losses, miners, samplers, tree_hooks
from pml_htl.tree import TreeConsumerMixin

logging.getLogger("PML").setLevel(logging.WARNING)


def make_models(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU()), torch.nn.Linear(16, 8)


class EvalCalls:
    """Counts the forwards a module makes in eval mode (the hook's embedding pass)."""

    def __init__(self, module):
        self.count = 0
        module.register_forward_hook(self._seen)

    def _seen(self, module, inputs, output):
        self.count += not module.training


def inference_statistics(model, dataset, label_fn=lambda y: y):
    """{label: (n, S, Q)} of the whole data set embedded in eval mode, by loops."""
    with torch.no_grad():
        model.eval()
        embeddings = model(dataset.data)
        model.train()
    return loop_statistics([(embeddings, label_fn(torch.as_tensor(dataset.labels)))])


def expected_statistics(batches, previous):
    """The training batches' statistics, and ``previous``'s for unseen classes."""
    ref = loop_statistics(batches)
    ref.update({c: v for c, v in previous.items() if c not in ref})
    return ref


@pytest.mark.parametrize(
    "dtype, rtol", [(torch.float64, 1e-12), (torch.float32, 1e-6), (torch.bfloat16, 1e-6)]
)
def test_hand_written_loop_trees_come_from_the_training_steps(blob_dataset, dtype, rtol):
    model = torch.nn.Sequential(*make_models())
    eval_calls = EvalCalls(model)
    loss = losses.HierarchicalTripletLoss()
    hook = tree_hooks.TreeRebuildHook(
        blob_dataset, consumers=[loss], statistics_from="training", progress=False
    )
    assert loss.gathers_statistics and not loss.drop_in
    initial = hook.rebuild(model)  # no training embeddings yet: an embedding pass
    assert eval_calls.count > 0
    previous = inference_statistics(model, blob_dataset)
    assert_statistics_match(initial.statistics, previous, rtol=1e-6)

    g = torch.Generator().manual_seed(0)
    seen_classes = torch.as_tensor(np.unique(blob_dataset.labels)[:8])  # 4 classes unseen
    batches = []
    for size in (16, 12, 16):
        y = seen_classes[torch.randint(0, 8, (size,), generator=g)]
        x = torch.randn(size, 8, generator=g).to(dtype).requires_grad_(True)
        loss(x, y).backward()
        batches.append((x.detach(), y))
    loss.eval()
    loss(torch.randn(16, 8, generator=g).to(dtype), seen_classes.repeat(2))  # eval: not gathered
    loss.train()

    eval_calls.count = 0
    tree = hook.rebuild(model)
    assert eval_calls.count == 0  # no extra pass over the data set
    assert loss.tree is tree and loss.statistics is None  # taken, the next epoch starts afresh
    assert_statistics_match(tree.statistics, expected_statistics(batches, previous), rtol)

    # an epoch without a training step: every class keeps its statistics
    again = hook.rebuild(model)
    assert eval_calls.count == 0
    assert_statistics_match(again.statistics, expected_statistics(batches, previous), rtol)


def test_gathering_changes_neither_the_loss_nor_its_gradient():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 8, generator=g, dtype=torch.float64), torch.arange(4).repeat(4)
    tree = HierarchicalClassTree.from_embeddings(
        torch.randn(40, 8, generator=g), torch.arange(4).repeat(10)
    )
    grads = []
    for gathers in (False, True):
        loss = losses.HierarchicalTripletLoss(tree=tree)
        if gathers:
            loss.gather_statistics()
        emb = x.clone().requires_grad_(True)
        value = loss(emb * 2.0, y)
        value.backward()
        grads.append((value.detach(), emb.grad))
        assert (loss.statistics is not None) == gathers
    assert torch.equal(grads[0][0], grads[1][0]) and torch.equal(grads[0][1], grads[1][1])
    assert not loss.statistics.sums.requires_grad


def make_trainer(dataset, loss, miner, sampler, hook, trunk, embedder, iterations):
    return trainers.MetricLossOnly(
        models={"trunk": trunk, "embedder": embedder},
        optimizers={
            "trunk_optimizer": torch.optim.SGD(trunk.parameters(), lr=0.1),
            "embedder_optimizer": torch.optim.SGD(embedder.parameters(), lr=0.1),
        },
        batch_size=sampler.batch_size,
        loss_funcs={"metric_loss": loss},
        mining_funcs={"tuple_miner": miner},
        dataset=dataset,
        sampler=sampler,
        iterations_per_epoch=iterations,
        end_of_epoch_hook=hook,
        set_min_label_to_zero=True,
        dataset_labels=dataset.labels,
        dataloader_num_workers=0,
    )


def test_pml_trainer_builds_each_epoch_tree_from_that_epochs_steps(blob_dataset):
    trunk, embedder = make_models()
    eval_calls = EvalCalls(trunk)
    loss = losses.HierarchicalTripletLoss()
    miner = miners.HierarchicalTripletMiner()
    sampler = samplers.AnchorNeighborSampler(blob_dataset.labels, 1, 2, 4, seed=0)
    hook = tree_hooks.TreeRebuildHook(
        blob_dataset, consumers=[loss, miner, sampler], statistics_from="training", progress=False
    )
    batches, epochs = [], []

    def record(module, inputs, output):
        if module.training:
            batches.append((inputs[0].detach().clone(), inputs[1].clone()))

    loss.register_forward_hook(record)

    def end_of_epoch(trainer):
        previous = hook.tree.statistics  # the tree the epoch trained with
        hook(trainer)
        epochs.append((list(batches), previous, hook.tree))
        batches.clear()
        return True

    trainer = make_trainer(blob_dataset, loss, miner, sampler, end_of_epoch, trunk, embedder, 3)
    hook(trainer)  # the initial tree, from an embedding pass
    assert eval_calls.count > 0
    eval_calls.count = 0
    trainer.train(num_epochs=2)
    assert eval_calls.count == 0 and hook.num_rebuilds == 3
    for epoch_batches, previous, tree in epochs:
        assert len(epoch_batches) == 3
        previous = {
            int(c): (n, S, Q)
            for c, n, S, Q in zip(
                previous.labels,
                previous.counts.tolist(),
                previous.sums.numpy(),
                previous.squared_norms.tolist(),
            )
        }
        seen = set(torch.cat([y for _, y in epoch_batches]).tolist())
        assert 0 < len(seen) < 12  # 3 batches of 2 classes: some classes unseen
        assert_statistics_match(
            tree.statistics, expected_statistics(epoch_batches, previous), rtol=1e-6
        )
        assert tree.labels.tolist() == list(range(12))  # the trainer's labels, every class
    assert epochs[0][2] is not epochs[1][2] and epochs[1][2] is hook.tree
    assert loss.tree is hook.tree and miner.tree is hook.tree and sampler.tree is hook.tree


def test_saved_and_restored_loss_keeps_the_gathered_statistics(blob_dataset, tmp_path):
    """PML's HookContainer saves the loss mid-training with c_f.save_model and
    reloads it weights-only: the tree and the statistics gathered so far survive."""
    model = torch.nn.Sequential(*make_models())
    loss = losses.HierarchicalTripletLoss()
    hook = tree_hooks.TreeRebuildHook(
        blob_dataset, consumers=[loss], statistics_from="training", progress=False
    )
    hook.rebuild(model)
    g = torch.Generator().manual_seed(2)
    labels = torch.as_tensor(blob_dataset.labels[::5])
    loss(torch.randn(len(labels), 8, generator=g), labels)
    c_f.save_model(loss, str(tmp_path / "loss.pth"))

    restored = losses.HierarchicalTripletLoss()
    other_hook = tree_hooks.TreeRebuildHook(
        blob_dataset, consumers=[restored], statistics_from="training", progress=False
    )
    c_f.load_model(restored, str(tmp_path / "loss.pth"), "cpu")
    assert restored.gathers_statistics and not restored.drop_in
    eval_calls = EvalCalls(model)
    want, got = hook.rebuild(model), other_hook.rebuild(model)
    assert eval_calls.count == 0  # the restored tree stands for the first one
    assert torch.equal(got.statistics.sums, want.statistics.sums)
    assert torch.equal(got.level_assignments, want.level_assignments)


class RefusingConsumer(TreeConsumerMixin):
    tree = None

    def update_tree(self, tree, label_fn=None):
        if self.tree is not None:
            raise RuntimeError("consumer refused the tree")
        self.tree = tree


def test_a_refused_tree_leaves_the_gathered_statistics_in_place(blob_dataset):
    model = torch.nn.Sequential(*make_models())
    loss = losses.HierarchicalTripletLoss()
    hook = tree_hooks.TreeRebuildHook(
        blob_dataset, consumers=[loss, RefusingConsumer()], statistics_from="training"
    )
    first = hook.rebuild(model)
    x, y = torch.randn(8, 8), torch.as_tensor(blob_dataset.labels[::15])
    loss(x, y)
    with pytest.raises(RuntimeError, match="refused"):
        hook.rebuild(model)
    assert loss.tree is first and hook.num_rebuilds == 1
    assert_statistics_match(loss.statistics, loop_statistics([(x, y)]), rtol=1e-6)


def test_bad_statistics_from_and_wiring_are_refused(blob_dataset):
    with pytest.raises(ValueError, match="statistics_from must be one of"):
        tree_hooks.TreeRebuildHook(blob_dataset, statistics_from="train")
    with pytest.raises(TypeError, match="statistics_from must be a str"):
        tree_hooks.TreeRebuildHook(blob_dataset, statistics_from=None)

    model = torch.nn.Sequential(*make_models())
    sampler = samplers.AnchorNeighborSampler(blob_dataset.labels, 2, 2, 2, seed=0)
    no_loss = tree_hooks.TreeRebuildHook(
        blob_dataset, consumers=[sampler], statistics_from="training", progress=False
    )
    with pytest.raises(ValueError, match="none is registered"):
        no_loss.rebuild(model)
    assert no_loss.num_rebuilds == 0 and sampler.tree is None

    first, second = losses.HierarchicalTripletLoss(), losses.HierarchicalTripletLoss()
    hook = tree_hooks.TreeRebuildHook(blob_dataset, consumers=[first], statistics_from="training")
    with pytest.raises(ValueError, match="one registered loss, got 2"):
        hook.register(second)
    assert hook.consumers == [first] and not second.gathers_statistics  # all or nothing

    with pytest.raises(ValueError, match="normalize=False"):
        tree_hooks.TreeRebuildHook(
            blob_dataset, consumers=[first], normalize=False, statistics_from="training"
        )


def test_the_default_hook_does_not_make_the_loss_gather(blob_dataset):
    loss = losses.HierarchicalTripletLoss()
    tree_hooks.TreeRebuildHook(blob_dataset, consumers=[loss]).rebuild(
        torch.nn.Sequential(*make_models())
    )
    loss(torch.randn(8, 8), torch.as_tensor(blob_dataset.labels[:8]))
    assert not loss.gathers_statistics and loss.statistics is None
