"""PML contracts HTL must honour (these tests fail until the library does).

1. Drop-in mode under ``DistributedLossWrapper(efficient=False)`` trains like one
   process fed the gathered global batches (two real processes: gloo on the
   CPU, and nccl on two GPUs, skipped with fewer).
2. An empty batch gives a zero loss / empty index tuples, as PML's losses and
   miners do, also through ``CrossBatchMemory`` with an all-True enqueue_mask.
3. The dtype of the returned loss does not depend on the data (half inputs:
   always float32).
"""

import datetime
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from pytorch_metric_learning.reducers import SumReducer
from pytorch_metric_learning.utils import distributed as pml_dist

from pml_htl import HierarchicalClassTree, losses, miners

# ---------------------------------------------------------------------------
# 1. drop-in mode under DistributedLossWrapper(efficient=False)
# ---------------------------------------------------------------------------

WORLD = 2
D = 8
NUM_CLASSES = 7
PER_CLASS = 4  # samples of each class in one global batch
INTERVAL = 3  # tree_update_interval: the tree is rebuilt after 3 and 6 steps
STEPS = 2 * INTERVAL + 1  # the last step trains against the second tree
# Seeds of the trials. With these the failure is deterministic today: in float32
# every trial's per-class sums differ between the ranks' gather orders beyond
# statistics_agree's rtol, so the statistics are all-reduced (counts doubled); in
# float64 trials 2 and 5 raise "the class tree differs across ranks" (about 2 in 5
# seeds do) and in trial 0 the ranks' trees differ in the last bits of the sums.
TRIALS = (0, 2, 5)
# CrossBatchMemory's queue: two global batches, so when it wraps every rank
# overwrites the same rows (in its own gather order)
MEMORY = 2 * NUM_CLASSES * PER_CLASS
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def global_batch(trial, step, dtype):
    """The global batch of one step: rank r holds rows [r B, (r + 1) B)."""
    g = torch.Generator().manual_seed(1000 * trial + step)
    labels = torch.arange(NUM_CLASSES).repeat(PER_CLASS)[
        torch.randperm(NUM_CLASSES * PER_CLASS, generator=g)
    ]
    centers = torch.randn(NUM_CLASSES, D, generator=g, dtype=torch.float64)
    emb = centers[labels] + 0.7 * torch.randn(len(labels), D, generator=g, dtype=torch.float64)
    return emb.to(dtype), labels


def local_part(rank):
    b = NUM_CLASSES * PER_CLASS // WORLD
    return slice(rank * b, (rank + 1) * b)


def make_loss(kind):
    """(wrapped module, the HTL loss inside it) for kind 'loss' or 'cbm'."""
    htl = losses.HierarchicalTripletLoss(tree_update_interval=INTERVAL)
    if kind == "cbm":
        return losses.CrossBatchMemory(htl, D, memory_size=MEMORY), htl
    return htl, htl


def run_drop_in(kind, dtype, trial, forward):
    """Feed STEPS batches through ``forward``; record losses and the trees built."""
    module, htl = make_loss(kind)
    out = {"losses": [], "trees": [], "error": None}
    try:
        for step in range(STEPS):
            emb, labels = global_batch(trial, step, dtype)
            out["losses"].append(forward(module, emb, labels).detach())
            if (step + 1) % INTERVAL == 0:
                tree = htl.tree
                out["trees"].append(None if tree is None else tree.state_dict())
    except Exception as e:  # recorded, so that the test reports it
        out["error"] = f"{type(e).__name__}: {e}"
    return out


def distributed_forward(rank, device):
    def forward(module, emb, labels):
        part = local_part(rank)
        wrapped = pml_dist.DistributedLossWrapper(module, efficient=False)
        return wrapped(emb[part].to(device), labels[part].to(device))

    return forward


def single_process_forward(module, emb, labels):
    """What DistributedLossWrapper(efficient=False) computes, in one process."""
    return WORLD * module(emb, labels)


def drop_in_worker(rank, folder, backend):
    device = torch.device("cpu")
    if backend == "nccl":
        torch.cuda.set_device(rank)
        device = torch.device("cuda", rank)
    dist.init_process_group(
        backend,
        init_method=f"file://{folder}/rendezvous",
        rank=rank,
        world_size=WORLD,
        timeout=datetime.timedelta(seconds=30),  # a desynchronised collective fails, not hangs
    )
    results, broken = {}, None
    for kind in ("loss", "cbm"):
        for name, dtype in DTYPES.items():
            for trial in TRIALS:
                if broken:  # the ranks' collectives are out of step: stop here
                    results[kind, name, trial] = {"error": f"not run after: {broken}"}
                    continue
                run = run_drop_in(kind, dtype, trial, distributed_forward(rank, device))
                error = run["error"] or ""
                if "RuntimeError" in error and "differs across ranks" not in error:
                    broken = error  # e.g. a collective timed out on one rank
                results[kind, name, trial] = run
    torch.save(results, os.path.join(folder, f"rank{rank}.pt"))
    dist.destroy_process_group()


@pytest.fixture(scope="module", params=["gloo", "nccl"])
def drop_in_runs(request, tmp_path_factory):
    backend = request.param
    if backend == "nccl" and torch.cuda.device_count() < WORLD:
        pytest.skip(f"nccl needs {WORLD} CUDA devices, {torch.cuda.device_count()} visible")
    folder = str(tmp_path_factory.mktemp("contracts_dist"))
    mp.start_processes(drop_in_worker, args=(folder, backend), nprocs=WORLD, start_method="spawn")
    # on the CPU, where the one-process references are computed
    return [
        torch.load(os.path.join(folder, f"rank{r}.pt"), weights_only=False, map_location="cpu")
        for r in range(WORLD)
    ]


def tolerances(dtype_name):
    # the ranks gather the rows in another order: float32 sums differ in the last bits
    return dict(rtol=1e-5, atol=1e-5) if dtype_name == "float32" else dict(rtol=1e-12, atol=1e-12)


def assert_tree_matches(got_state, expected, dtype_name, where):
    assert got_state is not None, f"{where}: no tree was built"
    got = HierarchicalClassTree.from_state_dict(got_state)
    tol = tolerances(dtype_name)
    assert torch.equal(got.labels, expected.labels), where
    assert torch.equal(got.statistics.counts, expected.statistics.counts), (
        f"{where}: class counts {got.statistics.counts.tolist()}, one process "
        f"{expected.statistics.counts.tolist()}"
    )
    assert torch.allclose(got.statistics.sums, expected.statistics.sums, **tol), where
    assert torch.allclose(got.statistics.squared_norms, expected.statistics.squared_norms, **tol), (
        where
    )
    assert torch.allclose(got.spreads, expected.spreads, **tol), where
    assert torch.equal(got.level_assignments, expected.level_assignments), where


def check_like_one_process(drop_in_runs, kind, dtype_name):
    dtype = DTYPES[dtype_name]
    errors = [
        f"trial {trial}, rank {rank}: {results[kind, dtype_name, trial]['error']}"
        for trial in TRIALS
        for rank, results in enumerate(drop_in_runs)
        if results[kind, dtype_name, trial]["error"] is not None
    ]
    assert not errors, f"{kind} {dtype_name}: " + "; ".join(errors)
    for trial in TRIALS:
        where = f"{kind} {dtype_name} trial {trial}"
        expected = run_drop_in(kind, dtype, trial, single_process_forward)
        assert expected["error"] is None, expected["error"]
        runs = [results[kind, dtype_name, trial] for results in drop_in_runs]
        for rank, run in enumerate(runs):
            assert len(run["trees"]) == len(expected["trees"]) == 2, where
            for i, (got, want) in enumerate(zip(run["trees"], expected["trees"])):
                want = HierarchicalClassTree.from_state_dict(want)
                assert_tree_matches(got, want, dtype_name, f"{where}, rank {rank}, tree {i}")
            # the loss against those trees is the one-process loss
            got_losses, want_losses = torch.stack(run["losses"]), torch.stack(expected["losses"])
            assert torch.allclose(got_losses, want_losses, **tolerances(dtype_name)), (
                f"{where}, rank {rank}: losses {got_losses.tolist()}, one process "
                f"{want_losses.tolist()}"
            )
        # every rank trains against the very same tree
        for i in range(2):
            first, second = runs[0]["trees"][i], runs[1]["trees"][i]
            assert first.keys() == second.keys()
            for key in first:
                assert torch.equal(first[key], second[key]), f"{where}, tree {i}: {key} differs"


@pytest.mark.parametrize("dtype_name", list(DTYPES))
def test_drop_in_under_gathering_wrapper_builds_the_one_process_tree(drop_in_runs, dtype_name):
    """With DistributedLossWrapper(efficient=False) every rank sees the gathered
    global batch: each rank's drop-in tree (counts exactly, sums and squared
    norms closely, merge levels identically) and loss are those of one process
    fed the same global batches, the ranks' trees are identical, and nothing
    raises."""
    check_like_one_process(drop_in_runs, "loss", dtype_name)


@pytest.mark.parametrize("dtype_name", list(DTYPES))
def test_drop_in_cross_batch_memory_under_gathering_wrapper_builds_the_one_process_tree(
    drop_in_runs, dtype_name
):
    """CrossBatchMemory(HTL) under DistributedLossWrapper (efficient=False, the
    only mode PML allows for it): the same contract as the plain loss."""
    check_like_one_process(drop_in_runs, "cbm", dtype_name)


# ---------------------------------------------------------------------------
# 2. empty batches
# ---------------------------------------------------------------------------


def small_tree():
    g = torch.Generator().manual_seed(3)
    return HierarchicalClassTree.from_embeddings(
        torch.randn(60, 4, generator=g), torch.arange(6).repeat(10)
    )


def empty_batch(dtype=torch.float32):
    return torch.zeros(0, 4, dtype=dtype, requires_grad=True), torch.zeros(0, dtype=torch.long)


def assert_zero_loss_like_pml(loss, reference, embeddings):
    """``loss`` is what PML's loss returned (``reference``): a 0-d zero tensor in
    the same dtype, connected to ``embeddings`` so that backward runs."""
    assert torch.is_tensor(loss)
    assert loss.shape == reference.shape == ()
    assert loss.dtype == reference.dtype
    assert loss.item() == 0
    assert loss.requires_grad == reference.requires_grad
    loss.backward()
    assert embeddings.grad is not None and embeddings.grad.shape == embeddings.shape
    assert not embeddings.grad.any()


LOSS_MODES = {
    "tree": lambda: losses.HierarchicalTripletLoss(tree=small_tree()),
    "no_tree": lambda: losses.HierarchicalTripletLoss(tree_update_interval=None),
    "drop_in": lambda: losses.HierarchicalTripletLoss(),
}


@pytest.mark.parametrize("mode", list(LOSS_MODES))
def test_loss_on_empty_batch_returns_a_zero_loss_like_pml(mode):
    """An empty batch gives the zero loss PML's TripletMarginLoss gives: a 0-d
    tensor one can backward through."""
    x, y = empty_batch()
    reference = pml_losses.TripletMarginLoss()(*empty_batch())
    assert_zero_loss_like_pml(LOSS_MODES[mode]()(x, y), reference, x)


def test_drop_in_statistics_are_unchanged_by_an_empty_batch():
    """In drop-in (training) mode an empty batch adds nothing to the statistics."""
    loss = losses.HierarchicalTripletLoss(tree_update_interval=100)
    g = torch.Generator().manual_seed(0)
    loss(torch.randn(12, 4, generator=g), torch.arange(3).repeat(4))
    before = loss.statistics.state_dict()
    before = {k: v.clone() for k, v in before.items()}
    x, y = empty_batch()
    out = loss(x, y)
    assert out.item() == 0
    after = loss.statistics.state_dict()
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), key


@pytest.mark.parametrize("tree", [None, "tree"])
def test_miner_on_empty_batch_returns_empty_triplets_like_pml(tree):
    """An empty batch mines three empty int64 tensors, as TripletMarginMiner does."""
    x, y = empty_batch()
    reference = pml_miners.TripletMarginMiner()(x, y)
    miner = miners.HierarchicalTripletMiner(tree=None if tree is None else small_tree())
    got = miner(x, y)
    assert len(got) == len(reference) == 3
    for g, r in zip(got, reference):
        assert torch.is_tensor(g) and g.dtype == r.dtype and g.shape == r.shape == (0,)


def test_loss_with_empty_reference_set_returns_a_zero_loss_like_pml():
    """Non-empty embeddings against an empty ref_emb: PML's loss returns a zero
    loss, and so does HTL."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 4, generator=g).requires_grad_(True)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    ref, ref_labels = empty_batch()
    x_pml = x.detach().clone().requires_grad_(True)
    reference = pml_losses.TripletMarginLoss()(x_pml, y, ref_emb=ref, ref_labels=ref_labels)
    got = losses.HierarchicalTripletLoss(tree=small_tree())(
        x, y, ref_emb=ref.detach(), ref_labels=ref_labels
    )
    assert_zero_loss_like_pml(got, reference, x)


def test_miner_with_empty_reference_set_returns_empty_triplets_like_pml():
    """Non-empty embeddings against an empty ref_emb mine no triplet."""
    x, y = torch.randn(6, 4), torch.tensor([0, 0, 1, 1, 2, 2])
    ref, ref_labels = empty_batch()
    reference = pml_miners.TripletMarginMiner()(x, y, ref.detach(), ref_labels)
    got = miners.HierarchicalTripletMiner()(x, y, ref.detach(), ref_labels)
    assert len(got) == len(reference) == 3
    for g, r in zip(got, reference):
        assert torch.is_tensor(g) and g.dtype == r.dtype and g.shape == r.shape == (0,)


def test_cross_batch_memory_with_all_rows_enqueued_returns_zero_and_queues_them_once():
    """CrossBatchMemory with an all-True enqueue_mask (every row goes to the
    queue, none is a query) returns a zero loss like PML's TripletMarginLoss in
    the same place, and the queue holds the enqueued rows exactly once."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(6, 4, generator=g).requires_grad_(True)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    mask = torch.ones(6, dtype=torch.bool)
    pml_cbm = pml_losses.CrossBatchMemory(pml_losses.TripletMarginLoss(), 4, memory_size=16)
    reference = pml_cbm(x.detach().clone().requires_grad_(True), y, enqueue_mask=mask)
    cbm = losses.CrossBatchMemory(losses.HierarchicalTripletLoss(), 4, memory_size=16)
    got = cbm(x, y, enqueue_mask=mask)
    assert cbm.queue_idx == pml_cbm.queue_idx == 6
    assert torch.equal(cbm.embedding_memory[:6], x.detach())
    assert torch.equal(cbm.label_memory[:6], y)
    assert not cbm.embedding_memory[6:].any()
    assert_zero_loss_like_pml(got, reference, x)


# ---------------------------------------------------------------------------
# 3. the loss dtype does not depend on the data
# ---------------------------------------------------------------------------

LABELS = {
    "valid_triplets": torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]),
    "one_class": torch.zeros(8, dtype=torch.long),
    "one_sample_per_class": torch.arange(8),
}


def small_tree_of(labels):
    """A tree over the classes of ``labels`` and two more (5-D embeddings)."""
    g = torch.Generator().manual_seed(6)
    classes = torch.unique(torch.cat([labels, torch.tensor([100, 101])])).repeat(4)
    return HierarchicalClassTree.from_embeddings(torch.randn(len(classes), 5, generator=g), classes)


LOSS_DTYPE = {
    torch.float16: torch.float32,
    torch.bfloat16: torch.float32,
    torch.float32: torch.float32,
    torch.float64: torch.float64,
}


@pytest.mark.filterwarnings("ignore::pml_htl.WiringWarning")  # no tree on purpose
@pytest.mark.parametrize("reducer", ["default", "sum"])
def test_loss_dtype_does_not_depend_on_the_batch(reducer):
    """The loss is float32 for float16/bfloat16 embeddings and in the
    embeddings' dtype for float32/float64, whether or not the batch has a valid
    triplet, with or without a tree; backward reaches the embeddings in their
    own dtype."""
    wrong = []
    for dtype, loss_dtype in LOSS_DTYPE.items():
        for name, labels in LABELS.items():
            for tree in (None, small_tree_of(labels)):
                g = torch.Generator().manual_seed(4)
                x = torch.randn(len(labels), 5, generator=g).to(dtype).requires_grad_(True)
                kwargs = {} if reducer == "default" else {"reducer": SumReducer()}
                loss_fn = losses.HierarchicalTripletLoss(
                    tree=tree, tree_update_interval=None, **kwargs
                )
                loss = loss_fn(x, labels)
                assert loss.shape == ()
                loss.backward()
                assert x.grad is not None and x.grad.dtype == dtype
                if loss.dtype != loss_dtype:
                    where = f"{dtype}, {name}, {'no tree' if tree is None else 'tree'}"
                    wrong.append(f"{where}: {loss.dtype}, expected {loss_dtype}")
    assert not wrong, "; ".join(wrong)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_loss_dtype_with_an_empty_mined_tuple_is_float32_for_half_inputs(dtype):
    """A miner that found nothing (empty indices_tuple) leaves the loss float32
    for half embeddings, as when it finds triplets."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(8, 5, generator=g).to(dtype).requires_grad_(True)
    y = LABELS["valid_triplets"]
    tree = HierarchicalClassTree.from_embeddings(torch.randn(40, 5, generator=g), y.repeat(5))
    loss_fn = losses.HierarchicalTripletLoss(tree=tree)
    found = loss_fn(x, y, (torch.tensor([0]), torch.tensor([1]), torch.tensor([2])))
    empty = torch.zeros(0, dtype=torch.long)
    none = loss_fn(x, y, (empty, empty, empty))
    assert found.dtype == torch.float32
    assert none.dtype == torch.float32
    none.backward()
    assert x.grad is not None and x.grad.dtype == dtype
