"""faiss on the GPU: the wiring against a stand-in faiss module, and the real thing on CUDA."""

import sys
import types

import pytest
import torch
from pytorch_metric_learning.utils import inference
from pytorch_metric_learning.utils.inference import FaissKMeans, FaissKNN

from benchmarks.evaluation.accuracy import (
    RecallAtKAccuracyCalculator,
    make_accuracy_calculator,
)
from benchmarks.evaluation.faiss_device import (
    describe_knn,
    faiss_gpu_count,
    faiss_kmeans,
    faiss_knn,
    faiss_uses_gpu,
)


# ------------------------------------------------------------ a stand-in faiss
class FlatL2:
    """Exact L2 search by brute force (faiss returns squared distances)."""

    def __init__(self, d):
        self.d = d
        self.data = torch.empty(0, d)

    def add(self, x):
        self.data = torch.cat([self.data, torch.as_tensor(x).float()])

    def search(self, q, k):
        d2 = torch.cdist(torch.as_tensor(q).float(), self.data) ** 2
        nearest = torch.topk(d2, k, largest=False, dim=1)
        return nearest.values, nearest.indices


class GpuFlatL2(FlatL2):
    """What faiss's GPU conversion returns; PML tells it by "Gpu" in the type name."""


def fake_faiss(num_gpus=None):
    """A faiss module; ``num_gpus=None`` is a CPU-only build (faiss-cpu)."""
    faiss = types.ModuleType("faiss")
    faiss.calls = []
    faiss.IndexFlatL2 = FlatL2

    def to_gpu(index, gpus=None, **kwargs):
        faiss.calls.append(("index_cpu_to_gpus_list", list(gpus)))
        gpu = GpuFlatL2(index.d)
        gpu.data = index.data
        return gpu

    def to_all_gpus(index, **kwargs):
        faiss.calls.append(("index_cpu_to_all_gpus", None))
        return to_gpu(index, gpus=range(num_gpus))

    class Kmeans:
        def __init__(self, d, k, **kwargs):
            faiss.calls.append(("Kmeans", kwargs))
            self.index = FlatL2(d)
            self.k = k

        def train(self, x):
            self.index.add(torch.as_tensor(x)[: self.k])

    faiss.Kmeans = Kmeans
    faiss.index_gpu_to_cpu = lambda index: index
    if num_gpus is None:
        faiss.get_num_gpus = lambda: 0  # faiss-cpu defines it too
    else:
        faiss.StandardGpuResources = object
        faiss.get_num_gpus = lambda: num_gpus
        faiss.index_cpu_to_gpus_list = to_gpu
        faiss.index_cpu_to_all_gpus = to_all_gpus
    return faiss


@pytest.fixture
def install_faiss(monkeypatch):
    """Make ``import faiss`` (ours) and PML's module global ``faiss`` the stand-in."""

    def install(faiss):
        monkeypatch.setitem(sys.modules, "faiss", faiss)
        monkeypatch.setattr(inference, "faiss", faiss, raising=False)
        # PML reads CUDA's version for faiss's GPU k limit; CPU-only torch has none.
        monkeypatch.setattr(torch.version, "cuda", torch.version.cuda or "12.1")
        return faiss

    return install


# ------------------------------------------------------------ which path
def test_gpu_count_needs_a_gpu_build(install_faiss, monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss -> ImportError
    assert faiss_gpu_count() == 0
    assert describe_knn("cuda") == "torch (faiss not installed)"
    install_faiss(fake_faiss(None))
    assert faiss_gpu_count() == 0
    assert not faiss_uses_gpu("cuda:0")
    assert describe_knn("cuda:0") == "faiss on CPU"
    install_faiss(fake_faiss(0))  # a GPU build on a machine without GPUs
    assert faiss_gpu_count() == 0
    assert not faiss_uses_gpu("cuda:0")
    install_faiss(fake_faiss(2))
    assert faiss_gpu_count() == 2
    assert faiss_uses_gpu("cuda:1") and faiss_uses_gpu(torch.device("cuda", 0))
    assert not faiss_uses_gpu("cpu")
    assert describe_knn("cuda:1") == "faiss on GPU"
    assert describe_knn("cpu") == "faiss on CPU"


def test_bad_device_type(install_faiss):
    install_faiss(fake_faiss(1))
    for bad in (0, None, ["cuda"]):
        with pytest.raises(TypeError, match="device"):
            faiss_uses_gpu(bad)


@pytest.mark.parametrize(
    "num_gpus, device, want_gpus, want_kmeans_gpu",
    [
        (1, "cuda:0", [0], True),
        (2, "cuda:1", [1], True),
        (1, "cpu", None, False),
        (None, "cuda:0", None, False),  # faiss-cpu: CPU, as before
        (0, "cuda:0", None, False),
    ],
)
def test_make_accuracy_calculator_picks_the_device(
    install_faiss, num_gpus, device, want_gpus, want_kmeans_gpu
):
    install_faiss(fake_faiss(num_gpus))
    calc = make_accuracy_calculator(device=device)
    assert isinstance(calc.knn_func, FaissKNN)
    assert calc.knn_func.gpus == want_gpus
    assert isinstance(calc.kmeans_func, FaissKMeans)
    assert calc.kmeans_func.kwargs == {
        "niter": 20,
        "min_points_per_centroid": 1,
        "gpu": want_kmeans_gpu,
    }
    direct = RecallAtKAccuracyCalculator(device=torch.device(device))
    assert direct.knn_func.gpus == want_gpus


def test_cuda_without_index_is_the_current_device(install_faiss, monkeypatch):
    install_faiss(fake_faiss(4))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    assert faiss_knn("cuda").gpus == [3]
    assert make_accuracy_calculator(device="cuda").knn_func.gpus == [3]


def test_explicit_functions_are_kept(install_faiss):
    install_faiss(fake_faiss(1))
    knn, kmeans = FaissKNN(), FaissKMeans(niter=3)
    calc = make_accuracy_calculator(device="cuda:0", knn_func=knn, kmeans_func=kmeans)
    assert calc.knn_func is knn and calc.kmeans_func is kmeans
    assert faiss_kmeans("cuda:0", gpu=False).kwargs == {"gpu": False}


# ------------------------------------------------------------ what PML then does
def _brute_force_knn(q, ref, k):
    d2 = torch.cdist(q.double(), ref.double()) ** 2
    return torch.topk(d2, k, largest=False, dim=1).indices


@pytest.mark.parametrize("device, via_gpu", [("cuda:0", True), ("cpu", False)])
def test_knn_search_goes_through_the_gpu_index(install_faiss, device, via_gpu):
    faiss = install_faiss(fake_faiss(1))
    g = torch.Generator().manual_seed(0)
    q, ref = torch.randn(30, 5, generator=g), torch.randn(50, 5, generator=g)
    # PML's FaissKNN copies the embeddings to the CPU before it searches, so
    # CPU tensors take the same path as CUDA ones here.
    _, indices = faiss_knn(device)(q, 7, ref)
    assert torch.equal(indices, _brute_force_knn(q, ref, 7))
    gpu_calls = [c for c in faiss.calls if c[0].startswith("index_cpu_to")]
    assert gpu_calls == ([("index_cpu_to_gpus_list", [0])] if via_gpu else [])


@pytest.mark.parametrize("device, want", [("cuda:0", True), ("cpu", False)])
def test_kmeans_asks_faiss_for_the_gpu(install_faiss, device, want):
    faiss = install_faiss(fake_faiss(1))
    x = torch.randn(40, 4, generator=torch.Generator().manual_seed(1))
    assignment = faiss_kmeans(device, niter=20)(x, 5)
    assert faiss.calls == [("Kmeans", {"niter": 20, "gpu": want})]
    assert assignment.shape == (40,) and set(assignment[:5].tolist()) == set(range(5))


# ------------------------------------------------------------ the real thing
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_accuracy_matches_cpu(monkeypatch):
    """On CUDA, with whatever faiss is installed (GPU build, CPU build, none):
    the same metrics as on the CPU, and faiss's GPU index exactly when faiss
    has GPU support."""
    converted = []
    to_gpu = inference.convert_to_gpu_index

    def spy(index, gpus):
        converted.append(gpus)
        return to_gpu(index, gpus)

    monkeypatch.setattr(inference, "convert_to_gpu_index", spy)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(600, 16, generator=g)
    y = torch.randint(0, 60, (600,), generator=g)
    ks = (1, 2, 4, 8)
    exclude = ("NMI", "AMI")  # k-means: random restarts differ between devices
    on_cpu = make_accuracy_calculator(device="cpu", recall_at_ks=ks, exclude=exclude)
    on_cuda = make_accuracy_calculator(device="cuda", recall_at_ks=ks, exclude=exclude)
    want = on_cpu.get_accuracy(x, y)
    assert not converted
    got = on_cuda.get_accuracy(x.cuda(), y.cuda())
    for name, value in want.items():
        assert got[name] == pytest.approx(value, abs=1e-6), name
    assert converted == ([[torch.cuda.current_device()]] if faiss_gpu_count() > 0 else [])
    if faiss_gpu_count() > 0:
        nmi = make_accuracy_calculator(device="cuda", include=("NMI",)).get_accuracy(
            x.cuda(), y.cuda()
        )["NMI"]
        assert 0.0 <= nmi <= 1.0
