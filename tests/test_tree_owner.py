"""One owner for the tree: TreeBuilder, the TreeConsumer contract the hook
drives, checkpoints that cannot switch a loss's mode, pickles without scratch
buffers, and the loss under torch.compile."""

import copy
import io
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from helpers import (
    BlobDataset,
    assert_statistics_match,
    loop_statistics,
    naive_mean,
    naive_triplets,
)

from pml_htl import HierarchicalClassTree, losses, miners, samplers, tree_hooks
from pml_htl.tree import (
    RebuildSchedule,
    TreeBuilder,
    TreeConsumer,
    TreeConsumerMixin,
    TreeRequirements,
)


def batches(n, classes=8, per_class=4, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        labels = torch.randperm(classes, generator=g)[: classes // 2].repeat_interleave(per_class)
        out.append((torch.randn(len(labels), dim, generator=g, dtype=torch.float64), labels))
    return out


def round_trip(state):
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


# ---------------------------------------------------------------- TreeBuilder
def test_builder_with_a_schedule_builds_the_tree_of_the_batches_since_the_last():
    data = batches(6)
    builder = TreeBuilder(schedule=RebuildSchedule(3))
    built = [builder.observe(x, y) for x, y in data]
    assert [t is not None for t in built] == [False, False, True, False, False, True]
    ref = loop_statistics(data[3:])
    assert_statistics_match(built[5].statistics, ref, rtol=1e-12)
    assert builder.statistics is None and builder.iteration == 6


def test_builder_without_a_schedule_only_gathers_until_taken():
    data = batches(3)
    builder = TreeBuilder()
    assert all(builder.observe(x, y) is None for x, y in data)
    assert builder.iteration == 0  # iterations count for a schedule only
    assert_statistics_match(builder.take_statistics(), loop_statistics(data), rtol=1e-12)
    assert builder.statistics is None and builder.take_statistics() is None


def test_builder_builds_with_its_tree_options():
    x, y = batches(1)[0]
    builder = TreeBuilder({"num_levels": 5, "linkage": "single"})
    tree = builder.build(TreeBuilder().observe(x, y) or _statistics(x, y))
    assert (tree.num_levels, tree.linkage, tree.level_start) == (5, "single", 0)
    with pytest.raises(ValueError, match="linkage"):
        TreeBuilder({"linkage": "ward"})


def _statistics(x, y):
    builder = TreeBuilder()
    builder.observe(x, y)
    return builder.take_statistics()


def test_builder_state_round_trip_goes_on_identically():
    data = batches(7)
    first = TreeBuilder(schedule=RebuildSchedule(4))
    for x, y in data[:5]:
        first.observe(x, y)
    second = TreeBuilder(schedule=RebuildSchedule(4))
    second.load_state_dict(round_trip(first.state_dict()))
    assert second.iteration == 5
    assert_statistics_match(second.statistics, loop_statistics(data[4:5]), rtol=1e-12)
    trees = [[b.observe(x, y) for x, y in data[5:]] for b in (first, second)]
    assert trees[0][-1] is None and trees[1][-1] is None  # the next build is at 8
    bad = dict(first.state_dict(), statistics={"labels": torch.arange(3)})
    with pytest.raises(KeyError):
        second.load_state_dict(bad)
    assert second.iteration == 7  # unchanged by the refused state


# ---------------------------------------------------------------- the contract
class Strict(TreeConsumerMixin):
    """A consumer that fails on any attribute outside the TreeConsumer protocol:
    the hook must drive it through the protocol alone."""

    def __init__(self):
        self.tree = None
        self.awaits_hook_tree = False
        self.calls = []

    def update_tree(self, tree, label_fn=None):
        self.calls.append(("update_tree", tree, label_fn))
        super().update_tree(tree, label_fn)

    def __getattr__(self, name):
        raise AssertionError(f"the hook probed {name!r}")


def test_loss_miner_and_sampler_are_tree_consumers():
    labels = np.repeat(np.arange(8), 4)
    for consumer in (
        losses.HierarchicalTripletLoss(),
        miners.HierarchicalTripletMiner(),
        samplers.AnchorNeighborSampler(labels, 1, 2, 2),
        Strict(),
    ):
        assert isinstance(consumer, TreeConsumer)
    assert not isinstance(object(), TreeConsumer)


def test_the_hook_drives_a_consumer_through_the_protocol_alone():
    dataset = BlobDataset()
    model = torch.nn.Linear(6, 8)
    strict, loss = Strict(), losses.HierarchicalTripletLoss()
    hook = tree_hooks.TreeRebuildHook(dataset, consumers=[loss, strict], progress=False)
    assert strict.awaits_hook_tree
    tree = hook.rebuild(model)
    assert strict.calls == [("update_tree", tree, None)] and strict.tree is tree


def test_requirements_say_what_each_consumer_needs():
    labels = np.repeat(np.arange(8), 4)
    loss = losses.HierarchicalTripletLoss(num_levels=5)
    assert loss.requirements() == TreeRequirements(
        {"num_levels": 5, "linkage": "average", "level_start": 0}, True, True
    )
    sampler = samplers.AnchorNeighborSampler(labels, 2, 2, 3)
    assert sampler.requirements() == TreeRequirements(batch_size=12)
    assert miners.HierarchicalTripletMiner().requirements().normalize is True


def test_a_refused_tree_is_rolled_back_through_update_tree():
    """The consumers that took the new tree get their previous one back (None
    included), the refusing one never changed."""

    class Refuses(Strict):
        def update_tree(self, tree, label_fn=None):
            if tree is not None:
                raise RuntimeError("refused")
            super().update_tree(tree, label_fn)

    dataset = BlobDataset()
    first, refuses = Strict(), Refuses()
    hook = tree_hooks.TreeRebuildHook(dataset, consumers=[first, refuses], progress=False)
    with pytest.raises(RuntimeError, match="refused"):
        hook.rebuild(torch.nn.Linear(6, 8))
    new_tree = first.calls[0][1]
    assert first.calls == [("update_tree", new_tree, None), ("update_tree", None, None)]
    assert first.tree is None and refuses.tree is None and hook.num_rebuilds == 0


def test_registering_a_non_consumer_names_the_protocol():
    with pytest.raises(TypeError, match="tree consumers"):
        tree_hooks.TreeRebuildHook(BlobDataset(), consumers=[object()])


def test_training_statistics_feed_the_hooks_builder():
    dataset = BlobDataset()
    loss = losses.HierarchicalTripletLoss()
    hook = tree_hooks.TreeRebuildHook(
        dataset, consumers=[loss], statistics_from="training", progress=False
    )
    assert loss.tree_builder is hook.builder and hook.builder.schedule is None
    inference = tree_hooks.TreeRebuildHook(dataset, consumers=[losses.HierarchicalTripletLoss()])
    assert inference.consumers[0].tree_builder is None and not inference.consumers[0].drop_in


# ---------------------------------------------------------------- checkpoints
def test_a_tree_less_checkpoint_into_a_loss_built_with_tree_is_refused():
    x, y = batches(1)[0]
    tree = HierarchicalClassTree.from_embeddings(x, y)
    fixed = losses.HierarchicalTripletLoss(tree=tree)
    with pytest.raises(ValueError, match="holds no class tree, but this loss was built with tree="):
        fixed.load_state_dict(losses.HierarchicalTripletLoss().state_dict())
    assert fixed.tree is tree and not fixed.drop_in  # nothing changed


def test_a_drop_in_checkpoint_into_a_loss_built_with_tree_is_refused():
    data = batches(3)
    source = losses.HierarchicalTripletLoss(tree_update_interval=2)
    for x, y in data:
        source(x, y)
    assert source.tree is not None and source.drop_in
    fixed = losses.HierarchicalTripletLoss(tree=HierarchicalClassTree.from_embeddings(*data[0]))
    with pytest.raises(ValueError, match="drop-in mode.*built with tree="):
        fixed.load_state_dict(source.state_dict())
    assert not fixed.drop_in


def test_a_tree_into_a_loss_that_can_hold_none_is_refused():
    x, y = batches(1)[0]
    source = losses.HierarchicalTripletLoss(tree=HierarchicalClassTree.from_embeddings(x, y))
    flat = losses.HierarchicalTripletLoss(tree_update_interval=None)
    with pytest.raises(ValueError, match="holds a class tree.*tree_update_interval=None"):
        flat.load_state_dict(source.state_dict())
    assert flat.tree is None
    # registered with a hook first, the same loss takes it
    tree_hooks.TreeRebuildHook(BlobDataset(), consumers=[flat])
    flat.load_state_dict(source.state_dict())
    assert flat.tree is not None


# ---------------------------------------------------------------- pickling
def test_pickle_and_deepcopy_carry_no_scratch_buffer():
    """A drop-in loss after one forward holds an 8192 x D scratch buffer; its
    pickle holds the statistics only, and the copy goes on identically."""
    D = 512
    data = [(torch.randn(32, D), torch.arange(8).repeat_interleave(4)) for _ in range(3)]
    loss = losses.HierarchicalTripletLoss(tree_update_interval=3)
    loss(*data[0])
    scratch = 8192 * D * 4
    state_bytes = len(pickle.dumps(loss.state_dict()))
    pickled = pickle.dumps(loss)
    assert len(pickled) < state_bytes + scratch / 10, (len(pickled), state_bytes)
    for clone in (pickle.loads(pickled), copy.deepcopy(loss)):
        assert_statistics_match(clone.statistics, loop_statistics([data[0]]), rtol=1e-6)
        for x, y in data[1:]:
            clone(x, y)
        assert clone.tree is not None and clone.tree.num_classes == 8


# ---------------------------------------------------------------- torch.compile
COMPILE_SCRIPT = """
import warnings
import torch
from pml_htl import HierarchicalClassTree, losses

torch.manual_seed(0)
labels = torch.arange(8).repeat_interleave(4)
x = torch.randn(32, 16, dtype=torch.float64)
tree = HierarchicalClassTree.from_embeddings(torch.randn(80, 16), torch.arange(8).repeat(10))
loss_fn = losses.HierarchicalTripletLoss(tree=tree)
explained = torch._dynamo.explain(loss_fn)(x, labels)
print("breaks", explained.graph_break_count)
compiled = torch.compile(loss_fn)
print("same", torch.allclose(compiled(x, labels), loss_fn(x, labels), rtol=1e-10, atol=0))
drop_in = losses.HierarchicalTripletLoss(tree_update_interval=2)
explained = torch._dynamo.explain(drop_in)(x, labels)
reasons = {r.reason.split("\\n")[0] for r in explained.break_reasons}
print("drop-in", sorted(reasons))
"""


def test_the_loss_compiles_without_a_graph_break():
    """With a tree (from a hook or given), the default step is one graph, and
    torch.compile prints no graph-break warning. Drop-in mode's bookkeeping
    (statistics, the schedule, builds) runs eagerly, outside the graph."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(COMPILE_SCRIPT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "breaks 0" in lines and "same True" in lines, done.stdout
    drop_in = next(line for line in lines if line.startswith("drop-in"))
    assert drop_in == "drop-in ['Skip inlining `torch.compiler.disable()`d function']", drop_in
    assert "Graph break" not in done.stderr and "graph break" not in done.stderr, done.stderr


# ---------------------------------------------------------------- the loss itself
def test_a_loss_restored_from_its_builder_state_matches_the_formula():
    data = batches(4)
    loss = losses.HierarchicalTripletLoss(tree_update_interval=4)
    for x, y in data:
        loss(x, y)
    emb, labels = batches(1, seed=9)[0]
    ref_tree = HierarchicalClassTree.from_embeddings(
        torch.cat([b[0] for b in data]), torch.cat([b[1] for b in data])
    )
    loss.eval()
    want = naive_mean(emb, labels, naive_triplets(labels), ref_tree, 0.1)
    torch.testing.assert_close(loss(emb, labels), want, rtol=1e-6, atol=1e-9)


# ---------------------------------------------------------------- float labels
def test_float_labels_are_refused_with_the_fix():
    x = torch.randn(8, 4)
    labels = torch.arange(4).repeat(2).float()  # PML's own losses accept these
    with pytest.raises(TypeError, match=r"integer class labels.*labels\.long\(\)"):
        losses.HierarchicalTripletLoss()(x, labels)
    with pytest.raises(TypeError, match=r"integer class labels.*labels\.long\(\)"):
        miners.HierarchicalTripletMiner()(x, labels)
    with pytest.raises(TypeError, match="integer class labels"):
        samplers.AnchorNeighborSampler(labels.numpy(), 1, 2, 2)


def test_float_labels_from_the_data_set_name_the_data_set():
    dataset = torch.utils.data.TensorDataset(torch.randn(16, 6), torch.arange(4).repeat(4).float())
    hook = tree_hooks.TreeRebuildHook(dataset, consumers=[losses.HierarchicalTripletLoss()])
    with pytest.raises(TypeError, match=r"the data set given to the TreeRebuildHook.*float32"):
        hook.rebuild(torch.nn.Linear(6, 4))
    assert hook.num_rebuilds == 0
