"""No host-device synchronisation in a default training step (pml_htl/_sync.py).

On CUDA every value read back to the host waits for the GPU. The loss's
default forward and backward (with a tree) read nothing back; the miner reads
back one number, the size of its output.

On the CPU a read-back costs nothing, so the library runs other code there.
The proxy: the loss and the miner run CUDA's code paths on the CPU
(``_sync.syncs_are_costly`` patched to say yes) under a TorchDispatchMode that
records every aten op that synchronises on CUDA, and a TorchFunctionMode that
records the reads that dispatch no aten op on the CPU (``.tolist()``,
``.numpy()``). On CUDA, the proof: ``torch.cuda.set_sync_debug_mode``.
"""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from helpers import (
    RefTree,
    hierarchical_data,
    make_labels,
    miner_tree,
    naive_mean,
    naive_triplets,
    naive_violating,
    sample,
    training_tree,
)
from pytorch_metric_learning.distances import CosineSimilarity
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from pml_htl import HierarchicalClassTree, _sync, _triplets, losses, miners
from pml_htl.tree import hierarchical_class_tree as tree_module

#: aten ops that wait for the device on CUDA: a value read back, or an output
#: whose size depends on the data (read back to allocate it)
SYNCING_OPS = {
    "_local_scalar_dense",  # .item(), bool(t), int(t), float(t)
    "is_nonzero",
    "nonzero",
    "nonzero_numpy",
    "argwhere",
    "_unique",
    "_unique2",
    "unique_dim",
    "unique_consecutive",
    "unique_dim_consecutive",
    "masked_select",
    "masked_scatter",
    "equal",
    "allclose",
    "bincount",
    "histc",
    "lift_fresh",  # torch.tensor(host data): a blocking copy to the device
    "lift_fresh_copy",
}
#: reads of host values that dispatch no aten op on a CPU tensor
HOST_READS = {"tolist", "numpy", "item", "__bool__", "__int__", "__float__", "__index__"}
INDEXING_OPS = {"index", "index_put", "index_put_", "_index_put_impl_"}


class SyncRecorder(TorchDispatchMode):
    """Records the aten ops that would synchronise on CUDA."""

    def __init__(self):
        super().__init__()
        self.found = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        if name in SYNCING_OPS:
            self.found.append(str(func))
        elif (
            name == "repeat_interleave"
            and func._overloadname != "self_int"
            and kwargs.get("output_size") is None
        ):
            self.found.append(f"{func} without output_size")
        elif name in INDEXING_OPS and any(
            torch.is_tensor(i) and i.dtype in (torch.bool, torch.uint8) for i in args[1]
        ):
            self.found.append(f"{func} with a boolean mask")
        return func(*args, **kwargs)


class HostReadRecorder(TorchFunctionMode):
    """Records tensor methods that read values to the host."""

    def __init__(self):
        super().__init__()
        self.found = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", None) in HOST_READS:
            self.found.append(f"Tensor.{func.__name__}")
        return func(*args, **(kwargs or {}))


class recording:
    """Both recorders; ``found`` lists what they saw."""

    def __enter__(self):
        self.host, self.ops = HostReadRecorder(), SyncRecorder()
        self.host.__enter__()
        self.ops.__enter__()
        return self

    def __exit__(self, *exc):
        self.ops.__exit__(*exc)
        self.host.__exit__(*exc)

    @property
    def found(self):
        return self.host.found + self.ops.found


@pytest.fixture
def cuda_paths(monkeypatch):
    """CUDA's code paths on the CPU: read-backs count as costly, value checks
    are device-side asserts (``torch._assert_async``; on the CPU it raises at once)."""
    monkeypatch.setattr(_sync, "syncs_are_costly", lambda device: True)
    monkeypatch.delenv(_sync.EAGER_CHECKS_ENV, raising=False)


def test_the_recorders_see_every_kind_of_read_back():
    """The proxy can fail: each way of reading a value back is recorded, under
    its own name."""
    x, repeats, host_list = torch.arange(6.0), torch.tensor([1, 2]), [1.0, 2.0]
    reads = {
        "Tensor.item": lambda: x.sum().item(),
        "Tensor.__bool__": lambda: bool(x.sum() > 0),
        "Tensor.__int__": lambda: int(x.max()),
        "Tensor.tolist": lambda: x.tolist(),
        "Tensor.numpy": lambda: x.numpy(),
        "aten._local_scalar_dense": lambda: x.sum().item(),
        "aten.nonzero": lambda: torch.nonzero(x),
        "aten._unique2": lambda: torch.unique(x),
        "aten.index.Tensor with a boolean mask": lambda: x[x > 2],
        "aten.index_put_.default with a boolean mask": lambda: x.clone().__setitem__(x > 2, 1),
        "aten.repeat_interleave.Tensor without output_size": lambda: torch.repeat_interleave(
            repeats
        ),
        "aten.equal": lambda: torch.equal(x, x),
        "aten.lift_fresh": lambda: torch.tensor(host_list),
    }
    for name, read in reads.items():
        with recording() as rec:
            read()
        assert any(found.startswith(name) for found in rec.found), (name, rec.found)
    with recording() as rec:  # and what needs no read-back is not
        y = torch.repeat_interleave(torch.arange(3), torch.arange(3), output_size=3)
        torch.where(x > 2, x, 0.0).sort()
        torch._assert_async(y.sum() == 5, "never fails")
    assert rec.found == []


# ----------------------------------------------------------------- the loss
def loss_case(name):
    """(loss, embeddings, labels, ref_emb, ref_labels, reference kind)."""
    tree = training_tree()
    labels = make_labels("unequal")
    emb = sample(labels, seed=80, dtype=torch.float32)
    if name == "default":
        return losses.HierarchicalTripletLoss(tree=tree), emb, labels, None, None, "sq"
    if name == "cosine":
        loss = losses.HierarchicalTripletLoss(tree=tree, distance=CosineSimilarity())
        return loss, emb, labels, None, None, "cos"
    if name == "bfloat16":
        loss = losses.HierarchicalTripletLoss(tree=tree)
        return loss, emb.to(torch.bfloat16), labels, None, None, "sq"
    if name == "ref_emb":
        ref_labels = torch.tensor([42, 3, 11, 57, 20, 64, 3, 42, 11, 11, 20, 57])
        ref = sample(ref_labels, seed=81, dtype=torch.float32)
        loss = losses.HierarchicalTripletLoss(tree=tree)
        return loss, emb, labels, ref, ref_labels, "sq"
    if name == "drop_in":  # before its first tree: alpha = beta
        return losses.HierarchicalTripletLoss(), emb, labels, None, None, "sq"
    if name == "drop_in_with_its_tree":  # classes the tree lacks would get beta
        loss = losses.HierarchicalTripletLoss()
        loss.tree = tree
        return loss, emb, labels, None, None, "sq"
    raise AssertionError(name)


LOSS_CASES = ["default", "cosine", "bfloat16", "ref_emb", "drop_in", "drop_in_with_its_tree"]


def loss_step(loss, emb, labels, ref, ref_labels):
    """Forward and backward; the loss and the gradients of the inputs."""
    inputs = [emb] if ref is None else [emb, ref]
    inputs = [x.detach().clone().requires_grad_(True) for x in inputs]
    value = loss(inputs[0], labels, None, *(() if ref is None else (inputs[1], ref_labels)))
    value.backward()
    return value.detach(), [x.grad for x in inputs]


def naive_reference(emb, labels, ref, ref_labels, kind, tree):
    """The float64 loop of test_loss on the same (rounded) inputs."""
    inputs = [emb.double()] if ref is None else [emb.double(), ref.double()]
    inputs = [x.detach().cpu().clone().requires_grad_(True) for x in inputs]
    labels, ref_labels = labels.cpu(), None if ref_labels is None else ref_labels.cpu()
    triplets = naive_triplets(labels, ref_labels)
    extra = {} if ref is None else dict(ref_emb=inputs[1], ref_labels=ref_labels)
    value = naive_mean(inputs[0], labels, triplets, tree, 0.1, kind, **extra)
    value.backward()
    return value.detach(), [x.grad for x in inputs]


def assert_matches_the_loop(got, grads, want, want_grads, dtype):
    tol = dict(rtol=1e-2, atol=1e-3) if dtype == torch.bfloat16 else dict(rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(got.cpu().double(), want, **tol)
    for g, w in zip(grads, want_grads):
        atol = tol["atol"] if dtype != torch.bfloat16 else 2e-2 * w.abs().max().item()
        torch.testing.assert_close(g.cpu().double(), w, rtol=tol["rtol"], atol=atol)


@pytest.mark.parametrize("case", LOSS_CASES)
def test_loss_step_reads_nothing_back_on_cudas_paths(cuda_paths, case):
    loss, emb, labels, ref, ref_labels, kind = loss_case(case)
    with recording() as rec:
        got, grads = loss_step(loss, emb, labels, ref, ref_labels)
    assert rec.found == []
    want, want_grads = naive_reference(emb, labels, ref, ref_labels, kind, loss.tree)
    assert 0 < want.item()
    assert_matches_the_loop(got, grads, want, want_grads, emb.dtype)


def test_loss_without_triplets_reads_nothing_back_and_is_zero(cuda_paths):
    loss = losses.HierarchicalTripletLoss(tree=training_tree())
    labels = torch.tensor([3, 11, 20, 42, 57, 64])  # one sample per class
    emb = sample(labels, seed=82)
    with recording() as rec:
        got, (grad,) = loss_step(loss, emb, labels, None, None)
    assert rec.found == []
    assert got.item() == 0 and not grad.any()


def test_the_default_cpu_path_does_read_back():
    """Without the patch the CPU runs its own code (top-k over the positives
    counted per chunk, margins per class pair): the proxy tells them apart."""
    loss, emb, labels, *_ = loss_case("default")
    with recording() as rec:
        loss_step(loss, emb, labels, None, None)
    assert rec.found


# ------------------------------------------------- the shared computations
@pytest.fixture(params=["own", "cuda's"])
def paths(request, monkeypatch):
    """The CPU's own code paths, and CUDA's run on the CPU."""
    if request.param == "cuda's":
        monkeypatch.setattr(_sync, "syncs_are_costly", lambda device: True)
        monkeypatch.delenv(_sync.EAGER_CHECKS_ENV, raising=False)
    return request.param


@pytest.mark.parametrize("max_elements", [3, 40, 1 << 21])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_hinge_sum_in_chunks_matches_the_loop(paths, max_elements, sign):
    """sum and count of [u_ap + v_an]_+ over (a, p, n), and the gradient, on
    chunks of anchor rows, against a loop over triplets."""
    g = torch.Generator().manual_seed(5)
    B, M = 7, 9
    dist = torch.rand(B, M, generator=g, dtype=torch.float64) * 2
    offsets = torch.rand(B, M, generator=g, dtype=torch.float64) * 0.6
    positive = torch.rand(B, M, generator=g) < 0.3
    negative = ~positive & (torch.rand(B, M, generator=g) < 0.8)
    positive[2] = False  # an anchor without positives
    x = dist.clone().requires_grad_(True)
    total, active = _triplets.all_triplet_hinge_sum(
        x, offsets, positive, negative, sign, max_elements
    )
    total.backward()

    y = dist.clone().requires_grad_(True)
    terms = [
        sign * y[a, p] + offsets[a, n] - sign * y[a, n]
        for a in range(B)
        for p in range(M)
        if positive[a, p]
        for n in range(M)
        if negative[a, n]
    ]
    want = sum(torch.relu(t) for t in terms)
    want.backward()
    assert 0 < int(active) < len(terms)
    assert int(active) == sum(int(t > 0) for t in terms)
    torch.testing.assert_close(total, want.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(x.grad, y.grad, rtol=0, atol=0)


def test_margin_table_matches_the_formula(paths, monkeypatch):
    """alpha[a, n] = beta + d_H(y_a, y_n) - s_{y_a} for every sample pair, in
    blocks of rows; with allow_unknown, beta for a class the tree lacks."""
    sizes, classes = [3, 4, 1, 5, 2, 3], [4, 8, 15, 16, 23, 42]
    x, y = hierarchical_data(sizes, labels=classes, seed=11)
    tree = HierarchicalClassTree.from_embeddings(x, y, num_levels=16)
    ref = RefTree(x.numpy(), y.numpy(), 16)
    H = ref.levels_from_heights(ref.naive_average_heights())
    alpha = 0.2 + ref.thresholds[H] - ref.spreads[:, None]
    monkeypatch.setattr(tree_module, "_PAIR_BLOCK", 17 * 9 * 2)  # two rows a block
    rows, cols = [5, 0, 0, 3, 2, 1, 4], [1, 1, 0, 2, 5, 4, 3, 3, 2]
    labels = torch.tensor([classes[i] for i in rows])
    ref_labels = torch.tensor([classes[i] for i in cols])
    table = tree.margin_table(labels, ref_labels, 0.2, dtype=torch.float32)
    assert table.dtype == torch.float32
    np.testing.assert_allclose(table.numpy(), alpha[np.ix_(rows, cols)], rtol=1e-6)

    unknown = labels.clone()
    unknown[1] = 99
    table = tree.margin_table(unknown, ref_labels, 0.2, allow_unknown=True)
    want = alpha[np.ix_(rows, cols)]
    want[1] = 0.2
    np.testing.assert_allclose(table.numpy(), want, rtol=1e-12)


# ---------------------------------------------------------------- the miner
@pytest.mark.parametrize("max_elements", [1 << 22, 20])
def test_miner_reads_back_once_on_cudas_paths(cuda_paths, max_elements):
    """One read-back however many chunks: the number of triplets, which sizes
    the output."""
    tree = miner_tree()
    torch.manual_seed(1)
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 3, 4, 4, 5])
    emb = torch.randn(len(labels), 8)
    miner = miners.HierarchicalTripletMiner(tree=tree, max_elements=max_elements)
    with recording() as rec:
        a, p, n = miner(emb, labels)
    assert rec.found == ["Tensor.__int__", "aten._local_scalar_dense.default"]  # one int()
    got = set(zip(a.tolist(), p.tolist(), n.tolist()))
    assert len(got) == len(a) > 0
    assert got == naive_violating(emb, labels, emb, labels, tree, 0.1, "squared", True)


# ------------------------------------------------------ checks on the device
def test_device_side_checks_refuse_bad_input_without_reading_back(cuda_paths):
    """On CUDA's paths the value checks are ``torch._assert_async`` (on the CPU it
    raises at once, a RuntimeError with the message; on CUDA the assert fails
    in a kernel)."""
    tree = training_tree()
    loss = losses.HierarchicalTripletLoss(tree=tree)
    labels = make_labels("balanced")
    emb = sample(labels, seed=83, dtype=torch.float32)
    bad = emb.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(RuntimeError, match="embeddings contain NaN or Inf"):
        loss(bad, labels)
    unknown = labels.clone()
    unknown[5] = 999
    with pytest.raises(RuntimeError, match="not in the class tree"):
        loss(emb, unknown)
    with pytest.raises(RuntimeError, match="not in the class tree"):
        miners.HierarchicalTripletMiner(tree=tree)(emb, unknown)
    indices = (torch.tensor([0]), torch.tensor([1]), torch.tensor([len(labels)]))
    with pytest.raises(RuntimeError, match="indices_tuple holds an index outside"):
        loss(emb, labels, indices)
    # the same checks as named ValueErrors with PML_HTL_EAGER_CHECKS=1
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(_sync.EAGER_CHECKS_ENV, "1")
        with pytest.raises(ValueError, match="embeddings contain NaN or Inf"):
            loss(bad, labels)
        with pytest.raises(ValueError, match=r"labels \[999\] are not in the class tree"):
            loss(emb, unknown)
        with pytest.raises(ValueError, match="indices_tuple"):
            loss(emb, labels, indices)


# -------------------------------------------------------------------- CUDA
@pytest.mark.parametrize("case", LOSS_CASES)
def test_cuda_loss_step_does_not_synchronise(cuda_device, case):
    """torch.cuda.set_sync_debug_mode("error") raises at any synchronising call."""
    loss, emb, labels, ref, ref_labels, kind = loss_case(case)
    cpu_tree = loss.tree
    loss.tree = None if cpu_tree is None else cpu_tree.to(cuda_device)
    inputs = [x if x is None else x.to(cuda_device) for x in (emb, labels, ref, ref_labels)]
    loss_step(loss, *inputs)  # warm-up: lazy initialisation may synchronise
    torch.cuda.synchronize()
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        got, grads = loss_step(loss, *inputs)
    finally:
        torch.cuda.set_sync_debug_mode(previous)
    torch.cuda.synchronize()
    want, want_grads = naive_reference(emb, labels, ref, ref_labels, kind, cpu_tree)
    assert_matches_the_loop(got, grads, want, want_grads, emb.dtype)


def test_cuda_miner_synchronises_once(cuda_device):
    tree = miner_tree()
    torch.manual_seed(1)
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 3, 4, 4, 5])
    emb = torch.randn(len(labels), 8)
    miner = miners.HierarchicalTripletMiner(tree=tree.to(cuda_device))
    args = emb.to(cuda_device), labels.to(cuda_device)
    miner(*args)  # warm-up
    torch.cuda.synchronize()
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            a, p, n = miner(*args)
    finally:
        torch.cuda.set_sync_debug_mode(previous)
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    assert len(syncs) == 1, [str(w.message) for w in syncs]
    got = set(zip(a.tolist(), p.tolist(), n.tolist()))
    assert got == naive_violating(emb, labels, emb, labels, tree, 0.1, "squared", True)


def test_cuda_eager_checks_raise_named_value_errors(cuda_device, monkeypatch):
    monkeypatch.setenv(_sync.EAGER_CHECKS_ENV, "1")
    tree = training_tree().to(cuda_device)
    labels = make_labels("balanced").to(cuda_device)
    emb = sample(labels.cpu(), seed=84, dtype=torch.float32).to(cuda_device)
    emb[2, 0] = float("inf")
    with pytest.raises(ValueError, match="embeddings contain NaN or Inf"):
        losses.HierarchicalTripletLoss(tree=tree)(emb, labels)


DEVICE_ASSERT_SCRIPT = """
import torch
from pml_htl import HierarchicalClassTree, losses
g = torch.Generator().manual_seed(0)
tree = HierarchicalClassTree.from_embeddings(
    torch.randn(40, 8, generator=g), torch.arange(4).repeat(10)
).to("cuda")
emb = torch.randn(8, 8, device="cuda")
emb[1, 1] = float("nan")
loss = losses.HierarchicalTripletLoss(tree=tree)(emb, torch.arange(4, device="cuda").repeat(2))
torch.cuda.synchronize()
print("NO ASSERT")
"""


def test_cuda_non_finite_embeddings_fail_a_device_side_assert(cuda_device):
    """In a subprocess: a failed device-side assert ends the process's CUDA context."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    run = subprocess.run(
        [sys.executable, "-c", DEVICE_ASSERT_SCRIPT],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=root,
    )
    output = run.stdout + run.stderr
    assert run.returncode != 0 and "NO ASSERT" not in output, output
    assert "device-side assert" in output, output
