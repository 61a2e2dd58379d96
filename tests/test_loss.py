"""HierarchicalTripletLoss against a naive loop over triplets (docs/method.md, "The loss").

The reference enumerates the triplets with a plain Python triple loop,
L2-normalises, computes the distances and the hinge itself; only d_H and s_c
are taken from the tree (tested against brute force in test_tree.py).
"""

import io

import numpy as np
import pytest
import torch
from helpers import (
    CLASSES,
    D,
    make_labels,
    naive_mean,
    naive_per_triplet,
    naive_triplets,
    sample,
    training_tree,
)
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning.distances import CosineSimilarity, LpDistance, SNRDistance
from pytorch_metric_learning.reducers import AvgNonZeroReducer, SumReducer
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from pml_htl import HierarchicalClassTree, WiringWarning, _triplets, losses
from pml_htl.losses import hierarchical_triplet_loss as htl_module
from pml_htl.tree import RebuildSchedule
from pml_htl.tree import builder as builder_module


@pytest.fixture(scope="module")
def tree():
    t = training_tree()
    # the margins really vary from pair to pair (otherwise the tests prove little)
    a = torch.tensor(CLASSES)
    alpha = t.margin(a[:, None], a[None, :])
    off = alpha[~torch.eye(len(CLASSES), dtype=torch.bool)]
    assert off.max() - off.min() > 0.3
    return t


def distance_for(kind):
    return {"sq": None, "plain": LpDistance(power=1), "cos": CosineSimilarity()}[kind]


def make_loss(kind="sq", **kwargs):
    dist = distance_for(kind)
    if dist is not None:
        kwargs["distance"] = dist
    return losses.HierarchicalTripletLoss(**kwargs)


def value_and_grad(fn, *inputs):
    inputs = [x.detach().clone().requires_grad_(True) for x in inputs]
    out = fn(*inputs)
    grads = torch.autograd.grad(out, inputs, allow_unused=True)
    # an input the result does not depend on has a zero gradient
    grads = tuple(torch.zeros_like(x) if g is None else g for g, x in zip(grads, inputs))
    return out.detach(), grads


def assert_close(got, want, rtol=1e-9, atol=1e-12):
    """``got`` (on any device) against the CPU reference ``want``."""
    torch.testing.assert_close(got.cpu().double(), want.cpu().double(), rtol=rtol, atol=atol)


def on(device, *tensors):
    return tuple(x.to(device) for x in tensors)


# ========================================================= all triplets
@pytest.mark.parametrize("kind", ["sq", "plain", "cos"])
@pytest.mark.parametrize("beta", [0.1, 0.5])
@pytest.mark.parametrize("batch", ["balanced", "unequal"])
def test_all_triplets_value_and_grad(tree, kind, beta, batch, device):
    labels = make_labels(batch)
    emb = sample(labels, seed=2)
    triplets = naive_triplets(labels)
    if batch == "balanced":  # Z_M = B (t - 1)(B - t) of the paper
        assert len(triplets) == 16 * 3 * 12
    loss_fn = make_loss(kind, tree=tree.to(device), beta=beta)
    device_labels = labels.to(device)
    got, (g_got,) = value_and_grad(lambda e: loss_fn(e, device_labels), emb.to(device))
    assert got.device.type == g_got.device.type == device.type
    want, (g_want,) = value_and_grad(
        lambda e: naive_mean(e, labels, triplets, tree, beta, kind), emb
    )
    assert 0 < want.item()
    assert_close(got, want)
    assert_close(g_got, g_want)
    # the triplets are a mix of active and easy ones (with plain distances
    # and beta = 0.5 every triplet is active: docs/method.md)
    per = naive_per_triplet(emb, labels, triplets, tree, beta, kind)
    assert (per > 0).any()
    if kind != "plain" or beta == 0.1:
        assert (per == 0).any()


def test_tree_margins_differ_from_a_flat_beta(tree):
    """With the tree the loss is not the plain triplet loss (alpha = beta)."""
    labels = make_labels("unequal")
    emb = sample(labels, seed=3)
    got = losses.HierarchicalTripletLoss(tree=tree)(emb, labels)
    plain = naive_mean(emb, labels, naive_triplets(labels), None, 0.1)
    assert abs(got.item() - plain.item()) > 1e-4


@pytest.mark.parametrize("kind", ["sq", "plain", "cos"])
def test_gradient_passes_gradcheck(tree, kind):
    labels = torch.tensor([3, 11, 3, 20, 11, 20])
    emb = sample(labels, seed=4, dim=3).requires_grad_(True)
    loss_fn = make_loss(kind, tree=tree)
    assert torch.autograd.gradcheck(lambda e: loss_fn(e, labels), (emb,), eps=1e-6, atol=1e-6)


def test_gradient_with_ref_emb_passes_gradcheck(tree):
    labels = torch.tensor([3, 11, 20, 11])
    ref_labels = torch.tensor([3, 3, 11, 20, 42, 20])
    emb = sample(labels, seed=5, dim=3).requires_grad_(True)
    ref = sample(ref_labels, seed=6, dim=3).requires_grad_(True)
    loss_fn = losses.HierarchicalTripletLoss(tree=tree)
    assert torch.autograd.gradcheck(
        lambda e, r: loss_fn(e, labels, ref_emb=r, ref_labels=ref_labels),
        (emb, ref),
        eps=1e-6,
        atol=1e-6,
    )


# ================================================================ dtypes
@pytest.mark.parametrize(
    "dtype,rtol,atol_scale",
    [
        (torch.float64, 1e-10, 1e-12),
        (torch.float32, 1e-5, 1e-6),
        (torch.float16, 1e-2, 1e-2),
        (torch.bfloat16, 1e-2, 2e-2),
    ],
)
@pytest.mark.parametrize("kind", ["sq", "cos"])
def test_each_dtype_matches_the_float64_loop(tree, dtype, rtol, atol_scale, kind, device):
    labels = make_labels("unequal")
    emb = sample(labels, seed=7).to(dtype)  # the rounded inputs
    loss_fn = make_loss(kind, tree=tree.to(device))
    x = emb.clone().to(device).requires_grad_(True)
    got = loss_fn(x, labels.to(device))
    (g_got,) = torch.autograd.grad(got, x)
    assert g_got.dtype == dtype
    assert torch.isfinite(got).all() and torch.isfinite(g_got).all()
    if dtype in (torch.float32, torch.float64):
        assert got.dtype == dtype
    triplets = naive_triplets(labels)
    want, (g_want,) = value_and_grad(
        lambda e: naive_mean(e, labels, triplets, tree, 0.1, kind), emb.double()
    )
    torch.testing.assert_close(got.cpu().double(), want, rtol=rtol, atol=atol_scale * 1e-3)
    atol = atol_scale * g_want.abs().max().item()
    torch.testing.assert_close(g_got.cpu().double(), g_want, rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bfloat16", "float16"])
def test_autocast_training_step(tree, device, dtype):
    """One training step under torch.autocast (bfloat16 on the CPU and CUDA,
    float16 on CUDA with a GradScaler): the loss of the model's half-precision
    embeddings is computed and returned in float32, and its value and
    gradient are those of the float64 loop on the same embeddings."""
    if dtype == torch.float16 and device.type != "cuda":
        pytest.skip("float16 autocast is CUDA's: the CPU's autocast runs in bfloat16")
    torch.manual_seed(0)
    labels = make_labels("unequal")
    model = torch.nn.Linear(D, D).to(device)
    inputs = sample(labels, seed=70, dtype=torch.float32).to(device)
    loss_fn = losses.HierarchicalTripletLoss(tree=tree.to(device))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    # a small scale: float16 gradients of this tiny model must not overflow (skipped step)
    scaler = torch.amp.GradScaler(device.type, init_scale=256.0, enabled=dtype == torch.float16)
    with torch.autocast(device.type, dtype=dtype):
        emb = model(inputs)
        loss = loss_fn(emb, labels.to(device))
    assert emb.dtype == dtype and loss.dtype == torch.float32
    (g_emb,) = torch.autograd.grad(loss, emb, retain_graph=True)
    assert g_emb.dtype == dtype
    triplets = naive_triplets(labels)
    want, (g_want,) = value_and_grad(
        lambda e: naive_mean(e, labels, triplets, tree, 0.1), emb.detach().cpu().double()
    )
    assert_close(loss.detach(), want, rtol=1e-4, atol=1e-5)
    atol = 2e-2 * g_want.abs().max().item()
    torch.testing.assert_close(g_emb.cpu().double(), g_want, rtol=1e-2, atol=atol)

    before = [p.detach().clone() for p in model.parameters()]
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    for p, b in zip(model.parameters(), before):
        assert torch.isfinite(p).all() and not torch.equal(p.detach(), b)


# ================================================================ ref_emb
def test_ref_emb_includes_identical_copy_of_anchor(tree):
    labels = torch.tensor([3, 3, 11, 11, 20, 57])
    emb = sample(labels, seed=8)
    extra_labels = torch.tensor([3, 11, 42, 57, 20, 20])
    extra = sample(extra_labels, seed=9)
    # ref holds identical copies of anchors 0, 2 and 5, then other samples
    ref_emb = torch.cat([emb[[0, 2, 5]], extra])
    ref_labels = torch.cat([labels[[0, 2, 5]], extra_labels])
    triplets = naive_triplets(labels, ref_labels)
    assert (0, 0, 2) in triplets  # the anchor's own copy is a positive
    loss_fn = losses.HierarchicalTripletLoss(tree=tree)
    got, g_got = value_and_grad(
        lambda e, r: loss_fn(e, labels, ref_emb=r, ref_labels=ref_labels), emb, ref_emb
    )
    want, g_want = value_and_grad(
        lambda e, r: naive_mean(e, labels, triplets, tree, 0.1, "sq", r, ref_labels),
        emb,
        ref_emb,
    )
    assert_close(got, want)
    assert_close(g_got[0], g_want[0])
    assert_close(g_got[1], g_want[1])
    # sanity of the reference: dropping the copies would change the value
    no_copy = [t for t in triplets if not (t[1] < 3 and [0, 2, 5][t[1]] == t[0])]
    other = naive_mean(emb, labels, no_copy, tree, 0.1, "sq", ref_emb, ref_labels)
    assert abs(other.item() - want.item()) > 1e-6


@pytest.mark.parametrize("kind", ["sq", "cos"])
def test_ref_emb_all_triplets(tree, kind):
    labels = make_labels("unequal")[:10]
    emb = sample(labels, seed=10)
    ref_labels = torch.tensor([42, 3, 11, 57, 20, 64, 3, 42, 11, 11, 20, 57])
    ref_emb = sample(ref_labels, seed=11)
    triplets = naive_triplets(labels, ref_labels)
    loss_fn = make_loss(kind, tree=tree, beta=0.3)
    got, g_got = value_and_grad(
        lambda e, r: loss_fn(e, labels, ref_emb=r, ref_labels=ref_labels), emb, ref_emb
    )
    want, g_want = value_and_grad(
        lambda e, r: naive_mean(e, labels, triplets, tree, 0.3, kind, r, ref_labels),
        emb,
        ref_emb,
    )
    assert_close(got, want)
    assert_close(g_got[0], g_want[0])
    assert_close(g_got[1], g_want[1])


def test_ref_emb_with_ref_labels_being_labels(tree):
    """Two views of one batch: loss(view1, labels, ref_emb=view2, ref_labels=labels).
    As in PML, ``ref_labels is labels`` drops the self-pairs (a, a), but the
    distances must still be measured to ref_emb, not ignore it."""
    labels = make_labels("balanced")[:12]
    view1 = sample(labels, seed=12)
    view2 = sample(labels, seed=13)
    triplets = naive_triplets(labels)  # p != a
    loss_fn = losses.HierarchicalTripletLoss(tree=tree)
    got, g_got = value_and_grad(
        lambda e, r: loss_fn(e, labels, ref_emb=r, ref_labels=labels), view1, view2
    )
    want, g_want = value_and_grad(
        lambda e, r: naive_mean(e, labels, triplets, tree, 0.1, "sq", r, labels), view1, view2
    )
    assert_close(got, want)
    assert_close(g_got[0], g_want[0])
    assert_close(g_got[1], g_want[1])


# =========================================================== indices_tuple
@pytest.mark.parametrize("kind", ["sq", "plain", "cos"])
def test_indices_tuple_triplets(tree, kind):
    labels = make_labels("unequal")
    emb = sample(labels, seed=14)
    all_t = naive_triplets(labels)
    g = torch.Generator().manual_seed(0)
    chosen = [all_t[i] for i in torch.randperm(len(all_t), generator=g)[:25].tolist()]
    idx = tuple(torch.tensor([t[k] for t in chosen]) for k in range(3))
    loss_fn = make_loss(kind, tree=tree)
    got, (g_got,) = value_and_grad(lambda e: loss_fn(e, labels, idx), emb)
    want, (g_want,) = value_and_grad(lambda e: naive_mean(e, labels, chosen, tree, 0.1, kind), emb)
    assert_close(got, want)
    assert_close(g_got, g_want)


def test_indices_tuple_pairs(tree):
    labels = make_labels("unequal")
    emb = sample(labels, seed=15)
    L = labels.tolist()
    pos = [(a, p) for a in range(len(L)) for p in range(len(L)) if a != p and L[a] == L[p]]
    neg = [(a, n) for a in range(len(L)) for n in range(len(L)) if L[a] != L[n]]
    g = torch.Generator().manual_seed(1)
    pos = [pos[i] for i in torch.randperm(len(pos), generator=g)[:15].tolist()]
    neg = [neg[i] for i in torch.randperm(len(neg), generator=g)[:60].tolist()]
    triplets = [(a, p, n) for (a, p) in pos for (a2, n) in neg if a == a2]
    assert len(triplets) > 10
    idx = (
        torch.tensor([a for a, _ in pos]),
        torch.tensor([p for _, p in pos]),
        torch.tensor([a for a, _ in neg]),
        torch.tensor([n for _, n in neg]),
    )
    loss_fn = losses.HierarchicalTripletLoss(tree=tree)
    got, (g_got,) = value_and_grad(lambda e: loss_fn(e, labels, idx), emb)
    want, (g_want,) = value_and_grad(lambda e: naive_mean(e, labels, triplets, tree, 0.1), emb)
    assert_close(got, want)
    assert_close(g_got, g_want)


# ================================================================ reducers
@pytest.mark.parametrize("reducer", ["sum", "avg_non_zero"])
@pytest.mark.parametrize("kind", ["sq", "cos"])
def test_sum_and_avg_non_zero_reducers_match_the_loop(tree, reducer, kind):
    labels = make_labels("unequal")
    emb = sample(labels, seed=16)
    red = SumReducer() if reducer == "sum" else AvgNonZeroReducer()
    loss_fn = make_loss(kind, tree=tree, reducer=red)
    triplets = naive_triplets(labels)

    def ref(e):
        per = naive_per_triplet(e, labels, triplets, tree, 0.1, kind)
        if reducer == "sum":
            return per.sum()
        return per[per > 0].mean()

    got, (g_got,) = value_and_grad(lambda e: loss_fn(e, labels), emb)
    want, (g_want,) = value_and_grad(ref, emb)
    assert_close(got, want)
    assert_close(g_got, g_want)


# ========================================================= degenerate cases
@pytest.mark.parametrize("labels", [[11] * 6, [3, 11, 20, 42, 57, 64]])
@pytest.mark.parametrize("reducer", [None, "sum"])
def test_no_valid_triplet_gives_zero_loss_and_gradient(tree, labels, reducer):
    labels = torch.tensor(labels)
    emb = sample(labels, seed=17).requires_grad_(True)
    kwargs = {} if reducer is None else {"reducer": SumReducer()}
    loss = losses.HierarchicalTripletLoss(tree=tree, **kwargs)(emb, labels)
    assert loss.item() == 0
    assert loss.requires_grad
    (g,) = torch.autograd.grad(loss, emb)
    assert torch.equal(g, torch.zeros_like(emb))


@pytest.mark.parametrize("kind", ["sq", "plain", "cos"])
def test_duplicate_embeddings_finite_gradients(tree, kind):
    labels = torch.tensor([3, 3, 3, 11, 11, 20, 20, 57])
    emb = sample(labels, seed=18)
    emb[1] = emb[0]  # identical positives
    emb[2] = emb[0]
    emb[6] = emb[5]
    emb[3] = emb[7]  # identical rows in different classes
    loss_fn = make_loss(kind, tree=tree)
    x = emb.clone().requires_grad_(True)
    loss = loss_fn(x, labels)
    (g,) = torch.autograd.grad(loss, x)
    assert torch.isfinite(loss) and torch.isfinite(g).all()
    want = naive_mean(emb, labels, naive_triplets(labels), tree, 0.1, kind)
    assert_close(loss.detach(), want)
    if kind != "plain":  # the naive sqrt has no gradient at 0
        _, (g_want,) = value_and_grad(
            lambda e: naive_mean(e, labels, naive_triplets(labels), tree, 0.1, kind), emb
        )
        assert_close(g, g_want)


# ============================================================= drop-in mode
def drop_in_batches(n, seed=20, classes=(3, 11, 20, 57)):
    out = []
    for i in range(n):
        g = torch.Generator().manual_seed(seed + i)
        labels = torch.tensor(classes).repeat(3)[torch.randperm(3 * len(classes), generator=g)]
        out.append((sample(labels, noise=0.6, seed=seed + 100 + i), labels))
    return out


def test_drop_in_builds_a_tree_after_interval_training_calls(device):
    batches = drop_in_batches(5)
    loss_fn = losses.HierarchicalTripletLoss(tree_update_interval=3)
    assert loss_fn.tree is None
    for emb, labels in batches[:2]:  # alpha = beta everywhere before any tree
        got = loss_fn(*on(device, emb, labels))
        want = naive_mean(emb, labels, naive_triplets(labels), None, 0.1)
        assert_close(got, want)
    assert loss_fn.tree is None

    loss_fn.eval()  # evaluation calls do not count
    for emb, labels in batches[3:5] * 2:
        got = loss_fn(*on(device, emb, labels))
        assert_close(got, naive_mean(emb, labels, naive_triplets(labels), None, 0.1))
    assert loss_fn.tree is None
    loss_fn.train()

    emb, labels = batches[2]
    got = loss_fn(*on(device, emb, labels))  # third training call: still alpha = beta ...
    assert_close(got, naive_mean(emb, labels, naive_triplets(labels), None, 0.1))
    assert loss_fn.tree is not None  # ... and then a tree is built, on the batches' device
    assert loss_fn.tree.device.type == device.type

    # the tree is the one of the three training batches' (normalised) statistics
    ref_tree = HierarchicalClassTree.from_embeddings(
        torch.cat([b[0] for b in batches[:3]]), torch.cat([b[1] for b in batches[:3]])
    )
    emb, labels = batches[3]
    loss_fn.eval()
    got = loss_fn(*on(device, emb, labels))
    triplets = naive_triplets(labels)
    assert_close(got, naive_mean(emb, labels, triplets, ref_tree, 0.1))
    assert abs(got.item() - naive_mean(emb, labels, triplets, None, 0.1).item()) > 1e-4


def test_drop_in_unknown_class_gets_beta(device):
    batches = drop_in_batches(2, classes=(3, 11, 20))
    loss_fn = losses.HierarchicalTripletLoss(tree_update_interval=2, beta=0.2)
    for emb, labels in batches:
        loss_fn(*on(device, emb, labels))
    assert loss_fn.tree is not None
    known = {3, 11, 20}
    ref_tree = HierarchicalClassTree.from_embeddings(
        torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    )
    labels = torch.tensor([3, 3, 11, 11, 57, 57, 20, 64])  # 57 and 64 are new
    emb = sample(labels, seed=30)
    loss_fn.eval()
    got = loss_fn(*on(device, emb, labels))
    triplets = naive_triplets(labels)
    want = naive_mean(emb, labels, triplets, ref_tree, 0.2, known=known)
    assert_close(got, want)


def test_update_tree_turns_drop_in_off(tree):
    batches = drop_in_batches(6)
    loss_fn = losses.HierarchicalTripletLoss(tree_update_interval=2)
    loss_fn(*batches[0])
    loss_fn.update_tree(tree)
    for emb, labels in batches[1:]:
        got = loss_fn(emb, labels)
        assert loss_fn.tree is tree
        assert_close(got, naive_mean(emb, labels, naive_triplets(labels), tree, 0.1))


def test_drop_in_default_schedule_builds_a_first_tree_after_ten_iterations():
    batches = drop_in_batches(12)
    loss_fn = losses.HierarchicalTripletLoss()  # tree_update_interval="auto"
    for emb, labels in batches[:9]:
        loss_fn(emb, labels)
    assert loss_fn.tree is None
    loss_fn(*batches[9])
    ref_tree = HierarchicalClassTree.from_embeddings(
        torch.cat([b[0] for b in batches[:10]]), torch.cat([b[1] for b in batches[:10]])
    )
    emb, labels = batches[11]
    loss_fn.eval()
    assert_close(
        loss_fn(emb, labels), naive_mean(emb, labels, naive_triplets(labels), ref_tree, 0.1)
    )


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def slow_builds(monkeypatch, clock, seconds_per_class_count):
    """Every tree the loss builds advances ``clock`` by the seconds given for its
    number of classes."""
    real = builder_module.HierarchicalClassTree

    def build(statistics, **options):
        clock.now += seconds_per_class_count[statistics.num_classes]
        return real(statistics, **options)

    monkeypatch.setattr(builder_module, "HierarchicalClassTree", build)


def train_and_watch(loss_fn, clock, batches, start=1, step_seconds=0.5):
    """Training calls of ``step_seconds`` each; the iterations that built a tree."""
    built = []
    for iteration, (emb, labels) in enumerate(batches, start):
        clock.now += step_seconds
        before = loss_fn.tree
        loss_fn(emb, labels)
        if loss_fn.tree is not before:
            built.append(iteration)
    return built


def test_drop_in_auto_schedule_with_a_fake_clock(monkeypatch):
    """first=3, budget 1/16, 0.5 s iterations: a build of 4 classes takes 1/8 s
    (gap 1/8 / (0.5 / 16) = 4), one of 6 classes 1/4 s (gap 8). The first tree
    comes after 3 iterations; at 7 the statistics hold 6 classes, predicted to
    need 4 (6/4)^2 = 9 iterations: built at 3 + 9 = 12, then at 20."""
    clock = FakeClock()
    slow_builds(monkeypatch, clock, {4: 0.125, 6: 0.25})
    four = drop_in_batches(3, classes=(3, 11, 20, 57))
    six = drop_in_batches(17, seed=40, classes=(3, 11, 20, 42, 57, 64))
    schedule = RebuildSchedule("auto", first=3, budget=1 / 16, clock=clock)
    loss_fn = losses.HierarchicalTripletLoss(tree_update_interval=schedule)
    assert train_and_watch(loss_fn, clock, (four + six)[:12]) == [3, 12]
    # the tree of iteration 12 is that of the statistics gathered since iteration 3
    want = HierarchicalClassTree.from_embeddings(
        torch.cat([b[0] for b in six[:9]]), torch.cat([b[1] for b in six[:9]])
    )
    assert torch.equal(loss_fn.tree.labels, want.labels)
    assert torch.equal(loss_fn.tree.level_assignments, want.level_assignments)
    assert_close(loss_fn.tree.spreads, want.spreads, rtol=1e-6)
    assert train_and_watch(loss_fn, clock, six[9:], start=13) == [20]


def test_drop_in_auto_schedule_survives_a_checkpoint(monkeypatch):
    clock = FakeClock()
    slow_builds(monkeypatch, clock, {4: 0.125})
    batches = drop_in_batches(60)
    schedule = RebuildSchedule("auto", clock=clock)  # the default settings, a fake clock
    uninterrupted = losses.HierarchicalTripletLoss(tree_update_interval=schedule)
    want = train_and_watch(uninterrupted, clock, batches)
    assert len([i for i in want if i > 25]) >= 2

    source = losses.HierarchicalTripletLoss(tree_update_interval=schedule)
    got = train_and_watch(source, clock, batches[:25])
    resumed = losses.HierarchicalTripletLoss(tree_update_interval=schedule)
    resumed.load_state_dict(round_trip(source))
    got += train_and_watch(resumed, clock, batches[25:], start=26)
    assert got == want


def test_a_schedule_given_to_several_losses_is_copied(monkeypatch):
    clock = FakeClock()
    slow_builds(monkeypatch, clock, {4: 0.125})
    schedule = RebuildSchedule("auto", first=2, budget=1 / 16, clock=clock)
    first = losses.HierarchicalTripletLoss(tree_update_interval=schedule)
    second = losses.HierarchicalTripletLoss(tree_update_interval=schedule)
    # first's builds (gap 0.125 / (0.5 / 16) = 4) leave second at its start
    assert train_and_watch(first, clock, drop_in_batches(10)) == [2, 6, 10]
    assert train_and_watch(second, clock, drop_in_batches(6)) == [2, 6]
    assert schedule.next_iteration == 2 and schedule.built_classes == 0


@pytest.mark.parametrize(
    "interval, error", [("never", ValueError), (0, ValueError), (10.0, TypeError)]
)
def test_bad_tree_update_interval(interval, error):
    with pytest.raises(error, match="tree_update_interval"):
        losses.HierarchicalTripletLoss(tree_update_interval=interval)


# =================================================================== state
def round_trip(module):
    buf = io.BytesIO()
    torch.save(module.state_dict(), buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def test_state_dict_round_trip_with_tree(tree):
    labels = make_labels("unequal")
    emb = sample(labels, seed=31)
    loss_fn = losses.HierarchicalTripletLoss(tree=tree)
    state = round_trip(loss_fn)
    fresh = losses.HierarchicalTripletLoss()
    fresh.load_state_dict(state)
    assert fresh.tree is not None
    assert_close(fresh(emb, labels), loss_fn(emb, labels), rtol=0, atol=0)
    assert_close(fresh(emb, labels), naive_mean(emb, labels, naive_triplets(labels), tree, 0.1))
    # a loaded tree is not replaced by drop-in updates
    for emb_b, labels_b in drop_in_batches(3):
        fresh(emb_b, labels_b)
    assert_close(fresh(emb, labels), loss_fn(emb, labels), rtol=0, atol=0)


def test_state_dict_round_trip_drop_in_partial_statistics(device):
    batches = [on(device, *b) for b in drop_in_batches(8)]
    loss_fn = losses.HierarchicalTripletLoss(tree_update_interval=3)
    for emb, labels in batches[:4]:  # tree from batches 0-2, statistics of batch 3
        loss_fn(emb, labels)
    assert loss_fn.tree is not None
    state = round_trip(loss_fn)
    fresh_default = losses.HierarchicalTripletLoss()
    fresh_default.load_state_dict(state)
    fresh = losses.HierarchicalTripletLoss(tree_update_interval=3)
    fresh.load_state_dict(state)

    emb, labels = batches[7]
    for m in (loss_fn, fresh_default, fresh):
        m.eval()
    want = loss_fn(emb, labels)
    assert_close(fresh_default(emb, labels), want, rtol=0, atol=0)
    assert_close(fresh(emb, labels), want, rtol=0, atol=0)

    # both continue identically: the next tree is built from batches 3-5
    for m in (loss_fn, fresh):
        m.train()
        for b in batches[4:6]:
            m(*b)
        m.eval()
    cpu_batches = [on("cpu", *b) for b in batches]
    ref_tree = HierarchicalClassTree.from_embeddings(
        torch.cat([b[0] for b in cpu_batches[3:6]]), torch.cat([b[1] for b in cpu_batches[3:6]])
    )
    emb_cpu, labels_cpu = cpu_batches[7]
    want = naive_mean(emb_cpu, labels_cpu, naive_triplets(labels_cpu), ref_tree, 0.1)
    assert_close(loss_fn(emb, labels), want)
    assert_close(fresh(emb, labels), want)


def test_drop_in_statistics_resumed_on_cpu_follow_the_training_device(device):
    """Statistics loaded from a checkpoint on the CPU move to the device the
    training batches come from (no per-step copy back to the host), and the
    next tree is the one of all the batches."""
    batches = drop_in_batches(4)
    source = losses.HierarchicalTripletLoss(tree_update_interval=4)
    for b in batches[:2]:
        source(*b)
    resumed = losses.HierarchicalTripletLoss(tree_update_interval=4)
    resumed.load_state_dict(round_trip(source))
    assert resumed.statistics.device.type == "cpu"
    for b in batches[2:3]:
        resumed(*on(device, *b))
    assert resumed.statistics.device.type == device.type
    resumed(*on(device, *batches[3]))  # the fourth training call builds the tree
    ref_tree = HierarchicalClassTree.from_embeddings(
        torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    )
    assert resumed.tree.device.type == device.type
    a = torch.tensor([3, 11, 20, 57])
    torch.testing.assert_close(
        resumed.tree.margin(*on(device, a[:, None], a[None, :])).cpu(),
        ref_tree.margin(a[:, None], a[None, :]),
        rtol=1e-6,
        atol=1e-6,
    )


# ========================================================= CrossBatchMemory
class PermissiveCrossBatchMemory(pml_losses.CrossBatchMemory):
    """PML's CrossBatchMemory without its whitelist of supported loss names,
    to check the numbers even while the whitelist rejects the loss."""

    @classmethod
    def check_loss_support(cls, loss_name):
        pass


@pytest.mark.parametrize(
    "wrapper",
    [
        pytest.param(lambda: losses.CrossBatchMemory, id="pml_htl.losses"),
        pytest.param(lambda: PermissiveCrossBatchMemory, id="no_whitelist"),
    ],
)
def test_cross_batch_memory_matches_the_loop_over_the_memory(tree, wrapper, device):
    memory_size, B = 24, 8
    loss_fn = losses.HierarchicalTripletLoss(tree=tree.to(device))
    cbm = wrapper()(loss_fn, embedding_size=D, memory_size=memory_size)
    mem_emb = torch.zeros(memory_size, D, dtype=torch.float64)
    mem_lab = torch.zeros(memory_size, dtype=torch.long)
    queue, filled = 0, False
    for step in range(5):  # the queue wraps around at step 3
        g = torch.Generator().manual_seed(40 + step)
        classes = torch.tensor(CLASSES)[torch.randperm(len(CLASSES), generator=g)[:4]]
        labels = classes.repeat(2)
        emb = sample(labels, seed=50 + step)
        device_labels = labels.to(device)
        got, (g_got,) = value_and_grad(lambda e: cbm(e, device_labels), emb.to(device))
        assert got.device.type == device.type
        assert torch.isfinite(got) and torch.isfinite(g_got).all()

        # reference: the memory holds the last <= 24 samples, the current
        # batch included; a sample is never its own positive
        slots = [(queue + i) % memory_size for i in range(B)]
        mem_emb[slots] = emb
        mem_lab[slots] = labels
        queue = (queue + B) % memory_size
        filled = filled or queue == 0
        size = memory_size if filled else queue
        E, Lm = mem_emb[:size].clone(), mem_lab[:size].clone()
        triplets = [
            (a, p, n)
            for a in range(B)
            for p in range(size)
            if Lm[p] == labels[a] and p != slots[a]
            for n in range(size)
            if Lm[n] != labels[a]
        ]
        want, (g_want,) = value_and_grad(
            lambda e: naive_mean(e, labels, triplets, tree, 0.1, "sq", E, Lm), emb
        )
        assert_close(got, want)
        assert_close(g_got, g_want)


def test_cross_batch_memory_sums_over_masks_without_listing_triplets(tree, monkeypatch):
    """CrossBatchMemory hands the loss all pairs against the memory as a pair
    4-tuple. With the default reducer the loss sums the hinge over the (B, M)
    positive and negative masks, once a step, and never lists the
    B * pos * neg triplets."""
    B, M = 16, 64
    hinge_shapes, listed = [], []

    def spy_hinge(dist, *args, **kwargs):
        hinge_shapes.append(tuple(dist.shape))
        return original_hinge(dist, *args, **kwargs)

    def spy_listing(name, original):
        def spy(*args, **kwargs):
            listed.append(name)
            return original(*args, **kwargs)

        return spy

    original_hinge = htl_module.all_triplet_hinge_sum
    monkeypatch.setattr(htl_module, "all_triplet_hinge_sum", spy_hinge)
    for module, name in (
        (htl_module, "convert_to_triplets"),
        (htl_module, "all_triplet_indices"),
        (_triplets, "_expand_by_anchor"),  # what both list triplets with
    ):
        monkeypatch.setattr(module, name, spy_listing(name, getattr(module, name)))

    cbm = losses.CrossBatchMemory(losses.HierarchicalTripletLoss(tree=tree), D, memory_size=M)
    g = torch.Generator().manual_seed(1)
    steps = M // B + 1  # the memory fills, then wraps around
    for _ in range(steps):
        x = torch.randn(B, D, generator=g, requires_grad=True)
        y = torch.tensor(CLASSES)[torch.randint(0, len(CLASSES), (B,), generator=g)]
        # B > number of classes and two classes at least: every step has triplets
        assert len(y.unique()) >= 2
        cbm(x, y).backward()
        assert torch.isfinite(x.grad).all()
    assert listed == []
    assert hinge_shapes == [(B, min(B * (step + 1), M)) for step in range(steps)]


def test_all_pairs_tuple_gives_the_all_triplets_value_with_ref_emb(tree):
    """With the default reducer, all pairs against ref_emb as a 4-tuple give
    the value of the all-triplets path."""
    g = torch.Generator().manual_seed(2)
    x, ref = torch.randn(12, D, generator=g), torch.randn(40, D, generator=g)
    classes = torch.tensor(CLASSES)
    y = classes[torch.randint(0, len(CLASSES), (12,), generator=g)]
    ry = classes[torch.randint(0, len(CLASSES), (40,), generator=g)]
    loss = losses.HierarchicalTripletLoss(tree=tree)
    a = loss(x, y, ref_emb=ref, ref_labels=ry)
    b = loss(x, y, indices_tuple=lmu.get_all_pairs_indices(y, ry), ref_emb=ref, ref_labels=ry)
    assert a > 0
    torch.testing.assert_close(a, b)


def test_pml_cross_batch_memory_keeps_its_whitelist():
    """PML's own class checks a fixed list of names; pml_htl does not patch
    PML, so users take CrossBatchMemory from pml_htl.losses (documented)."""
    with pytest.raises(Exception, match="not supported for HierarchicalTripletLoss"):
        pml_losses.CrossBatchMemory(losses.HierarchicalTripletLoss(), embedding_size=D)


# =============================================================== bad input
@pytest.fixture
def batch():
    labels = torch.tensor([3, 3, 11, 11])
    return sample(labels, seed=60), labels


def test_bad_labels_none(tree, batch):
    emb, _ = batch
    with pytest.raises(ValueError, match="labels"):
        losses.HierarchicalTripletLoss(tree=tree)(emb)


def test_bad_labels_dtype_shape_length(tree, batch):
    emb, labels = batch
    loss_fn = losses.HierarchicalTripletLoss(tree=tree)
    with pytest.raises(TypeError, match="labels"):
        loss_fn(emb, labels.double())
    with pytest.raises(ValueError, match="labels"):
        loss_fn(emb, labels[:, None])
    with pytest.raises(ValueError, match="labels"):
        loss_fn(emb, labels[:3])


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_bad_non_finite_embeddings(tree, batch, bad):
    emb, labels = batch
    emb = emb.clone()
    emb[1, 2] = bad
    with pytest.raises(ValueError, match="embeddings"):
        losses.HierarchicalTripletLoss(tree=tree)(emb, labels)
    with pytest.raises(ValueError, match="ref_emb"):
        losses.HierarchicalTripletLoss(tree=tree)(
            batch[0], labels, ref_emb=emb, ref_labels=labels.clone()
        )


def test_bad_ref_emb_without_ref_labels(tree, batch):
    emb, labels = batch
    loss_fn = losses.HierarchicalTripletLoss(tree=tree)
    with pytest.raises(ValueError, match="ref_labels"):
        loss_fn(emb, labels, ref_emb=emb.clone())
    with pytest.raises(ValueError, match="ref_emb"):
        loss_fn(emb, labels, ref_labels=labels.clone())
    with pytest.raises(ValueError, match="ref_labels"):
        loss_fn(emb, labels, ref_emb=emb.clone(), ref_labels=labels[:3].clone())


@pytest.mark.parametrize("kind", ["sq", "cos"])
@pytest.mark.parametrize("scale", [0.0, 0.5, 2.0])
def test_margin_scale_value_and_grad(tree, kind, scale, device):
    """alpha = beta + lambda (d_H - s_{y_a}); lambda = 0 is the flat margin beta."""
    labels = make_labels("unequal")
    emb = sample(labels, seed=5)
    triplets = naive_triplets(labels)
    loss_fn = make_loss(kind, tree=tree.to(device), beta=0.2, margin_scale=scale)
    got, (g_got,) = value_and_grad(lambda e: loss_fn(e, labels.to(device)), emb.to(device))
    want, (g_want,) = value_and_grad(
        lambda e: naive_mean(e, labels, triplets, tree, 0.2, kind, scale=scale), emb
    )
    assert_close(got, want)
    assert_close(g_got, g_want)
    paper = naive_mean(emb, labels, triplets, tree, 0.2, kind)
    assert abs(float(paper) - float(want)) > 1e-3  # lambda really changes the loss
    if scale == 0:
        flat = naive_mean(emb, labels, triplets, None, 0.2, kind)
        assert_close(got, flat)


@pytest.mark.parametrize("scale", [-0.5, float("nan"), float("inf")])
def test_bad_margin_scale(scale):
    with pytest.raises(ValueError, match="margin_scale"):
        losses.HierarchicalTripletLoss(margin_scale=scale)
    with pytest.raises(TypeError, match="margin_scale"):
        losses.HierarchicalTripletLoss(margin_scale="1")


@pytest.mark.parametrize("beta", [float("nan"), float("inf"), -float("inf")])
def test_bad_beta(beta):
    with pytest.raises(ValueError, match="beta"):
        losses.HierarchicalTripletLoss(beta=beta)


@pytest.mark.parametrize("distance", [SNRDistance(), LpDistance(p=1), LpDistance(p=2, power=3)])
def test_bad_distance(distance):
    with pytest.raises(TypeError, match="distance"):
        losses.HierarchicalTripletLoss(distance=distance)


def test_bad_unknown_label_with_tree(tree, batch):
    emb, _ = batch
    labels = torch.tensor([3, 3, 11, 999])
    with pytest.raises(ValueError, match="labels"):
        losses.HierarchicalTripletLoss(tree=tree)(emb, labels)
    with pytest.raises(ValueError, match="labels"):
        losses.HierarchicalTripletLoss(tree=tree)(
            emb, torch.tensor([3, 3, 11, 11]), ref_emb=emb, ref_labels=labels
        )


def test_unnormalised_distance_is_refused():
    with pytest.raises(TypeError, match="normalize_embeddings"):
        losses.HierarchicalTripletLoss(distance=LpDistance(power=2, normalize_embeddings=False))
    losses.HierarchicalTripletLoss(distance=CosineSimilarity())  # accepted


def test_numpy_scalars_are_accepted():
    loss = losses.HierarchicalTripletLoss(beta=np.float32(0.2), num_levels=np.int64(8))
    assert loss.beta == pytest.approx(0.2) and loss.tree_options["num_levels"] == 8


def test_indices_tuple_out_of_range_or_malformed_is_refused(tree, batch):
    emb, labels = batch
    loss = losses.HierarchicalTripletLoss(tree=tree)
    with pytest.raises(ValueError, match="indices_tuple"):
        loss(emb, labels, (torch.tensor([0]), torch.tensor([9]), torch.tensor([1])))
    with pytest.raises(ValueError, match="indices_tuple"):
        loss(emb, labels, (torch.tensor([0, 1]), torch.tensor([1])))
    with pytest.raises(ValueError, match="equal lengths"):
        loss(emb, labels, (torch.tensor([0, 1]), torch.tensor([1]), torch.tensor([2])))
    with pytest.raises(TypeError, match="integer"):
        loss(emb, labels, (torch.tensor([0.0]), torch.tensor([1]), torch.tensor([2])))


def test_bad_state_is_refused_and_changes_nothing(tree):
    state = losses.HierarchicalTripletLoss(tree=tree).state_dict()
    state["_extra_state"] = dict(state["_extra_state"], statistics={"labels": torch.arange(3)})
    fresh = losses.HierarchicalTripletLoss(tree_update_interval=5)
    with pytest.raises(KeyError):
        fresh.load_state_dict(state)
    assert fresh.tree is None and fresh.drop_in is True and fresh.statistics is None


def test_loaded_drop_in_statistics_do_not_alias_the_checkpoint():
    """Training a loss loaded from a checkpoint adds to its own statistics, not
    to the checkpoint's tensors (nor so to another loss loaded from them)."""
    batches = drop_in_batches(8)
    source = losses.HierarchicalTripletLoss(tree_update_interval=100)
    for b in batches[:3]:
        source(*b)
    state = round_trip(source)
    key = next(k for k in state if k.endswith("_extra_state"))
    before = state[key]["statistics"]["counts"].clone()
    trained = losses.HierarchicalTripletLoss(tree_update_interval=100)
    trained.load_state_dict(state)
    idle = losses.HierarchicalTripletLoss(tree_update_interval=100)
    idle.load_state_dict(state)
    for b in batches[3:6]:
        trained(*b)
    assert trained.statistics.counts.sum() > before.sum()
    assert torch.equal(state[key]["statistics"]["counts"], before)
    assert torch.equal(idle.statistics.counts, before)


def test_drop_in_state_into_a_loss_without_drop_in():
    batches = drop_in_batches(4)
    source = losses.HierarchicalTripletLoss(tree_update_interval=100)
    for b in batches[:2]:
        source(*b)
    fixed_only = losses.HierarchicalTripletLoss(tree_update_interval=None)
    fixed_only.load_state_dict(round_trip(source))
    assert fixed_only.drop_in is False
    with pytest.warns(WiringWarning, match="flat beta"):
        fixed_only(*batches[2])  # trains without drop-in updates, on beta margins
    assert fixed_only.tree is None
