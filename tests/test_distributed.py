"""Two real processes (a file rendezvous): HTL under torch.distributed.

The workers run once per module and backend and save what they saw; each test
compares it with a single-process computation made here. Backends: gloo on
the CPU, and nccl on two GPUs (skipped with fewer).
"""

import datetime
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from helpers import assert_statistics_match, loop_statistics
from pytorch_metric_learning.utils import distributed as pml_dist

from pml_htl import ClassStatistics, HierarchicalClassTree, losses, samplers, tree_hooks
from pml_htl.tree import RebuildSchedule
from pml_htl.tree import builder as builder_module
from pml_htl.tree import distributed as htl_dist

WORLD = 2
B_LOCAL, D = 8, 6


def global_batch():
    g = torch.Generator().manual_seed(7)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 0, 1, 4, 4, 5, 5, 2, 3])
    emb = torch.randn(len(labels), D, generator=g, dtype=torch.float64)
    return emb, labels


def fixed_tree():
    g = torch.Generator().manual_seed(3)
    return HierarchicalClassTree.from_embeddings(
        torch.randn(60, D, generator=g), torch.arange(6).repeat(10)
    )


class Blobs(torch.utils.data.Dataset):
    def __init__(self):
        g = torch.Generator().manual_seed(11)
        self.labels = np.repeat(np.arange(9) * 2 + 5, 7)
        self.data = torch.randn(len(self.labels), 4, generator=g) + torch.as_tensor(
            self.labels[:, None] % 3, dtype=torch.float32
        )

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.data[i], int(self.labels[i])


#: each rank's labels in the training steps: classes 17, 19 and 21 are never drawn
TRAINING_LABELS = [[5, 5, 7, 7, 9, 9, 11, 11], [13, 13, 15, 15, 5, 7, 9, 11]]


def model():
    torch.manual_seed(5)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 5))


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def drop_in_auto_schedule(rank):
    """The default schedule when rank 0's iterations take 1 s and rank 1's 0.5 s,
    every build 1 s: gaps of 1 / (0.25 x 1) = 4 and 1 / (0.25 x 0.5) = 8
    iterations. Returns the iterations that built a tree and the gap kept."""
    clock = FakeClock()
    real = builder_module.HierarchicalClassTree

    def slow_build(statistics, **options):
        clock.now += 1.0
        return real(statistics, **options)

    schedule = RebuildSchedule("auto", first=2, budget=0.25, clock=clock)
    loss = losses.HierarchicalTripletLoss(tree_update_interval=schedule)
    wrapped = pml_dist.DistributedLossWrapper(loss, efficient=True)
    g = torch.Generator().manual_seed(200 + rank)
    built = []
    builder_module.HierarchicalClassTree = slow_build
    try:
        for iteration in range(1, 13):
            clock.now += 1.0 if rank == 0 else 0.5
            before = loss.tree
            wrapped(torch.randn(B_LOCAL, D, generator=g), torch.arange(4).repeat(2) + 4 * rank)
            if loss.tree is not before:
                built.append(iteration)
    finally:
        builder_module.HierarchicalClassTree = real
    return built, loss.state_dict()["_extra_state"]["schedule"]["gap"].item()


def backend_device(backend, rank):
    if backend == "nccl":
        torch.cuda.set_device(rank)
        return torch.device("cuda", rank)
    return torch.device("cpu")


def worker(rank, folder, backend):
    dist.init_process_group(
        backend,
        init_method=f"file://{folder}/rendezvous",
        rank=rank,
        world_size=WORLD,
        timeout=datetime.timedelta(seconds=60),  # ranks out of step fail, not hang
    )
    device = backend_device(backend, rank)
    out = {"backend": backend}
    emb, labels = (x.to(device) for x in global_batch())
    part = slice(rank * B_LOCAL, (rank + 1) * B_LOCAL)
    tree = fixed_tree().to(device)
    for efficient in (False, True):
        local = emb[part].clone().requires_grad_(True)
        wrapped = pml_dist.DistributedLossWrapper(
            losses.HierarchicalTripletLoss(tree=tree), efficient=efficient
        )
        loss = wrapped(local, labels[part])
        loss.backward()
        out[f"loss_{efficient}"] = loss.detach()
        out[f"grad_{efficient}"] = local.grad

    # the hook: each rank embeds its shard, statistics are all-reduced
    dataset = Blobs()
    hook = tree_hooks.TreeRebuildHook(dataset, progress=False)
    out["hook_tree"] = hook.rebuild(model().to(device)).state_dict()

    # drop-in mode with local batches (efficient wrapper): statistics are summed
    drop_in = losses.HierarchicalTripletLoss(tree_update_interval=2)
    wrapped = pml_dist.DistributedLossWrapper(drop_in, efficient=True)
    g = torch.Generator().manual_seed(100 + rank)
    seen = []
    for step in range(2):
        x = torch.randn(B_LOCAL, D, generator=g)
        y = torch.arange(4).repeat(2) + 4 * rank
        seen.append((x, y))
        wrapped(x.to(device), y.to(device))
    out["drop_in_tree"] = drop_in.tree.state_dict()
    out["drop_in_seen"] = seen
    if backend == "gloo":  # the schedule test runs on CPU tensors
        out["auto_builds"], out["auto_gap"] = drop_in_auto_schedule(rank)

    # statistics_from="training": after the first tree, the gathered global batches
    gathering = losses.HierarchicalTripletLoss()
    hook = tree_hooks.TreeRebuildHook(
        dataset, consumers=[gathering], statistics_from="training", progress=False
    )
    hook.rebuild(model())  # the first tree: an embedding pass, as above
    wrapped = pml_dist.DistributedLossWrapper(gathering, efficient=False)
    g = torch.Generator().manual_seed(200 + rank)
    seen = []
    for step in range(2):
        x = torch.randn(B_LOCAL, 5, generator=g)
        y = torch.tensor(TRAINING_LABELS[rank])
        seen.append((x, y))
        wrapped(x, y)
    out["training_tree"] = hook.rebuild(model()).state_dict()
    out["training_seen"] = seen

    # a deliberately divergent tree is an error on every rank
    g = torch.Generator().manual_seed(rank)
    own = HierarchicalClassTree.from_embeddings(
        torch.randn(30, D, generator=g).to(device), torch.arange(3, device=device).repeat(10)
    )
    try:
        htl_dist.check_same_tree(own)
        out["divergent_error"] = None
    except RuntimeError as e:
        out["divergent_error"] = str(e)

    # the sampler: shared seed broadcast from rank 0 when none is given
    sampler = samplers.AnchorNeighborSampler(np.arange(40) % 10, 2, 2, 2)
    out["sampler_seed"] = sampler.seed
    torch.save(out, os.path.join(folder, f"rank{rank}.pt"))
    dist.destroy_process_group()


def skip_unless_backend_runs(backend):
    if backend == "nccl" and torch.cuda.device_count() < WORLD:
        pytest.skip(f"nccl needs {WORLD} CUDA devices, {torch.cuda.device_count()} visible")


@pytest.fixture(scope="module", params=["gloo", "nccl"])
def results(request, tmp_path_factory):
    skip_unless_backend_runs(request.param)
    folder = str(tmp_path_factory.mktemp("dist"))
    mp.start_processes(worker, args=(folder, request.param), nprocs=WORLD, start_method="spawn")
    # what the ranks saw, on the CPU, where the single-process references are
    return [
        torch.load(os.path.join(folder, f"rank{r}.pt"), weights_only=False, map_location="cpu")
        for r in range(WORLD)
    ]


def test_loss_and_gradients_equal_one_process_on_the_global_batch(results):
    emb, labels = global_batch()
    x = emb.clone().requires_grad_(True)
    loss = WORLD * losses.HierarchicalTripletLoss(tree=fixed_tree())(x, labels)
    loss.backward()
    for rank, got in enumerate(results):
        assert torch.allclose(got["loss_False"], loss.detach(), rtol=1e-10)
        part = slice(rank * B_LOCAL, (rank + 1) * B_LOCAL)
        assert torch.allclose(got["grad_False"], x.grad[part], rtol=1e-9, atol=1e-12)


def test_efficient_mode_equals_local_anchors_against_global_reference(results):
    emb, labels = global_batch()
    tree = fixed_tree()
    for rank, got in enumerate(results):
        part = slice(rank * B_LOCAL, (rank + 1) * B_LOCAL)
        local = emb[part].clone().requires_grad_(True)
        others = torch.cat([emb[: part.start], emb[part.stop :]])
        other_labels = torch.cat([labels[: part.start], labels[part.stop :]])
        ref = torch.cat([local, others])  # PML puts the local copy first
        ref_labels = torch.cat([labels[part], other_labels])
        # every pair sharing the anchor's class, except the anchor with itself
        a1, p = torch.where(labels[part][:, None] == ref_labels[None, :])
        keep = a1 != p
        a2, n = torch.where(labels[part][:, None] != ref_labels[None, :])
        loss = WORLD * losses.HierarchicalTripletLoss(tree=tree)(
            local, labels[part], (a1[keep], p[keep], a2, n), ref, ref_labels
        )
        loss.backward()
        assert torch.allclose(got["loss_True"], loss.detach(), rtol=1e-10)
        assert torch.allclose(got["grad_True"], local.grad, rtol=1e-9, atol=1e-12)


def test_hook_builds_the_single_process_tree_on_every_rank(results):
    dataset = Blobs()
    expected = tree_hooks.TreeRebuildHook(dataset, progress=False).rebuild(model())
    # the ranks' float32 embeddings: the same bits on the CPU, not on a GPU
    rtol = 1e-10 if results[0]["backend"] == "gloo" else 1e-5
    for got in results:
        tree = HierarchicalClassTree.from_state_dict(got["hook_tree"])
        assert torch.equal(tree.labels, expected.labels)
        assert torch.equal(tree.level_assignments, expected.level_assignments)
        assert torch.allclose(tree.spreads, expected.spreads, rtol=rtol)
        assert torch.allclose(tree.thresholds, expected.thresholds, rtol=rtol)


def test_drop_in_sums_the_ranks_statistics(results):
    stats = None
    for got in results:
        for x, y in got["drop_in_seen"]:
            batch = ClassStatistics.from_embeddings(x, y)
            stats = batch if stats is None else stats + batch
    expected = HierarchicalClassTree(stats)
    trees = [HierarchicalClassTree.from_state_dict(g["drop_in_tree"]) for g in results]
    for tree in trees:
        assert torch.equal(tree.labels, torch.arange(8))
        assert torch.equal(tree.level_assignments, expected.level_assignments)
        # drop-in sums float32 embeddings per class in float32 before float64
        assert torch.allclose(tree.spreads, expected.spreads, rtol=1e-5)


def test_training_statistics_are_those_of_the_global_batches(results):
    """Every rank's loss saw the gathered global batch (efficient=False): the tree
    holds each global sample once, and the first tree's statistics for the
    classes no step drew."""
    dataset = Blobs()
    first = tree_hooks.TreeRebuildHook(dataset, progress=False).rebuild(model()).statistics
    steps = zip(results[0]["training_seen"], results[1]["training_seen"])
    batches = [(torch.cat([x0, x1]), torch.cat([y0, y1])) for (x0, y0), (x1, y1) in steps]
    expected = loop_statistics(batches)
    for c, n, S, Q in zip(first.labels.tolist(), first.counts, first.sums, first.squared_norms):
        if c not in expected:
            expected[c] = (int(n), S.numpy(), float(Q))
    assert sorted(expected) == sorted(set(dataset.labels.tolist()))
    trees = [HierarchicalClassTree.from_state_dict(g["training_tree"]) for g in results]
    for tree in trees:
        # the ranks' float32 sums differ in order only (each gathers its own rows first)
        assert_statistics_match(tree.statistics, expected, rtol=1e-6)
        assert torch.equal(tree.level_assignments, trees[0].level_assignments)


def test_drop_in_auto_schedule_builds_on_the_same_iterations(results):
    """The ranks agree on the largest gap (8), so both build at 2 and 2 + 8."""
    if results[0]["backend"] != "gloo":
        pytest.skip("the schedule runs on CPU tensors: gloo only")
    for got in results:
        assert got["auto_builds"] == [2, 10]
        assert got["auto_gap"] == 8.0


def test_divergent_trees_raise_a_clear_error(results):
    for got in results:
        assert got["divergent_error"] is not None
        assert "differs across ranks" in got["divergent_error"]


def test_sampler_seed_is_shared(results):
    assert results[0]["sampler_seed"] == results[1]["sampler_seed"]


def test_sampler_ranks_split_each_global_batch():
    emb = torch.randn(60, D)
    labels = torch.arange(12).repeat(5)
    tree = HierarchicalClassTree.from_embeddings(emb, labels)
    kw = dict(anchors_per_batch=2, classes_per_anchor=2, samples_per_class=3, tree=tree, seed=4)
    whole = samplers.AnchorNeighborSampler(labels, **kw)
    parts = [samplers.AnchorNeighborSampler(labels, **kw, num_replicas=2, rank=r) for r in (0, 1)]
    assert parts[0].batch_size == 6 and len(parts[0]) == len(whole) // 2
    full = np.array(list(whole)).reshape(-1, 12)
    split = [np.array(list(p)).reshape(-1, 6) for p in parts]
    lab = labels.numpy()
    for b in range(full.shape[0]):
        assert np.array_equal(np.concatenate([split[0][b], split[1][b]]), full[b])
        classes = [set(lab[s[b]].tolist()) for s in split]
        assert len(classes[0]) == 2 and len(classes[1]) == 2 and not classes[0] & classes[1]
    with pytest.raises(ValueError, match="num_replicas"):
        samplers.AnchorNeighborSampler(labels, 1, 3, 2, seed=0, num_replicas=2, rank=0)
    with pytest.raises(ValueError, match="rank"):
        samplers.AnchorNeighborSampler(labels, 2, 2, 2, seed=0, num_replicas=2, rank=2)
