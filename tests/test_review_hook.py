"""Review: defects of the tree-rebuild hook, each a minimal failing test."""

import logging

import numpy as np
import pytest
import torch
from pytorch_metric_learning import trainers

from pml_htl import losses, samplers, tree_hooks

logging.getLogger("PML").setLevel(logging.WARNING)


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 16), torch.nn.BatchNorm1d(16), torch.nn.Linear(16, 8)
    )


def test_rebuild_restores_every_submodule_mode(blob_dataset):
    """A frozen BatchNorm (submodule in eval inside a model in train mode) must
    stay frozen: the hook must restore each submodule's own mode, not call
    model.train(True) on the whole tree."""
    model = _model().train()
    model[1].eval()  # frozen BN, a common fine-tuning set-up
    before = {name: m.training for name, m in model.named_modules()}
    tree_hooks.TreeRebuildHook(blob_dataset, progress=False).rebuild(model)
    after = {name: m.training for name, m in model.named_modules()}
    assert after == before


class _Refuses:
    tree = None
    refuse = False

    def update_tree(self, tree):
        if self.refuse:
            raise RuntimeError("consumer refused the tree")
        self.tree = tree


def test_failed_hand_out_with_label_fn_restores_the_sampler(blob_dataset):
    """With a label_fn (a trainer's set_min_label_to_zero), the rollback calls
    sampler.update_tree(old) WITHOUT label_fn: it raises, masks the original
    error and leaves the sampler on the new tree while the loss is back on the
    old one."""
    model = _model()
    loss = losses.HierarchicalTripletLoss()
    sampler = samplers.AnchorNeighborSampler(blob_dataset.labels, 2, 2, 2, seed=0)
    refuses = _Refuses()
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


@pytest.mark.parametrize("kwargs", [dict(num_levels=0), dict(linkage="ward"), dict(level_start=2)])
def test_hook_rejects_bad_tree_options_at_construction(blob_dataset, kwargs):
    """Bad tree options must fail when the hook is made, not after a whole
    embedding pass of the training set at the end of the first epoch."""
    with pytest.raises((ValueError, TypeError)):
        tree_hooks.TreeRebuildHook(blob_dataset, progress=False, **kwargs)


class _TwoLevelBlobs(torch.utils.data.Dataset):
    """Blob data with 2-D labels [super class, class], as PML's
    label_hierarchy_level expects."""

    def __init__(self, base):
        self.base = base
        self.labels = np.stack([base.labels // 9, base.labels], 1)

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        return self.base.data[i], torch.as_tensor(self.labels[i])


def test_trainer_with_label_hierarchy_level_and_sampler(blob_dataset):
    """Issue 2: the hook 'produces the same labels the loss sees (PML trainers
    can remap labels: set_min_label_to_zero, label_hierarchy_level)'. With
    label_hierarchy_level=1 the hook passes the trainer's 2-D label processing
    to the sampler's 1-D classes and PML's get_hierarchy_label asserts."""
    ds = _TwoLevelBlobs(blob_dataset)
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
    )
    hook(trainer)
    assert sampler.tree is hook.tree and loss.tree is hook.tree
    assert sorted(hook.tree.labels.tolist()) == sorted(set(ds.labels[:, 1].tolist()))
