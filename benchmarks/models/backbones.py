"""The trunks the benchmark trains (never downloads weights)."""

from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Optional, Tuple

import torch
from torch import nn

from benchmarks.models.efficientnet_lite import (
    LITE_BACKBONES,
    build_lite,
    file_sha256,
    weights_file,
)
from benchmarks.models.weights import (
    OPTIONAL_SUFFIXES,
    WeightsError,
    compare_to,
    describe_misfit,
    drop_prefixes,
    read_state_dict,
)

BACKBONES = ("small-cnn", "resnet18", "resnet50", "googlenet") + LITE_BACKBONES
#: The settings of a run that each backbone reads (the others do not apply to it).
#: The EfficientNet-Lite trunks read image_size on every data set: the small images
#: are resized for them.
BACKBONE_SETTINGS = {
    "small-cnn": (),
    "resnet18": ("pretrained_weights",),
    "resnet50": ("pretrained_weights",),
    "googlenet": ("pretrained_weights", "googlenet_transform_input"),
    **{name: ("image_size",) for name in LITE_BACKBONES},
}
#: The trunks that normalise their input themselves (they take pixels in [0, 1]).
NORMALISES_INPUT = frozenset(LITE_BACKBONES)
#: The classifier heads the trunks drop (ImageNet checkpoints carry them).
HEADS = {"resnet18": ("fc.",), "resnet50": ("fc.",), "googlenet": ("fc.", "aux1.", "aux2.")}


class SmallCNN(nn.Module):
    """Four conv blocks and global average pooling: the CPU default (256-d output)."""

    def __init__(self, in_channels: int = 1, width: int = 32):
        super().__init__()

        def block(cin, cout, pool=True):
            layers = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout)]
            layers.append(nn.ReLU(inplace=True))
            if pool:
                layers.append(nn.MaxPool2d(2))
            return layers

        w = width
        self.features = nn.Sequential(
            *block(in_channels, w),
            *block(w, 2 * w),
            *block(2 * w, 4 * w),
            *block(4 * w, 8 * w, pool=False),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.output_size = 8 * w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class RepeatChannels(nn.Module):
    """Grayscale input for ImageNet-shaped trunks."""

    def __init__(self, trunk: nn.Module):
        super().__init__()
        self.trunk = trunk

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.trunk(x)


def make_trunk(
    name: str,
    in_channels: int,
    pretrained_weights: Optional[str] = None,
    googlenet_transform_input: Optional[bool] = None,
) -> Tuple[nn.Module, int]:
    """(trunk, output size). ``pretrained_weights`` is a local state dict file (see
    benchmarks/models/weights.py); googlenet's transform_input defaults to whether it is given."""
    if name not in BACKBONES:
        raise ValueError(f"--backbone must be one of {BACKBONES}, got {name!r}")
    if name in LITE_BACKBONES:
        trunk = build_lite(name)
        return trunk, trunk.output_size
    if googlenet_transform_input is None:
        googlenet_transform_input = bool(pretrained_weights)
    trunk, size = _build(name, in_channels, googlenet_transform_input)
    if pretrained_weights:
        shapes = {k: v.shape for k, v in trunk.state_dict().items()}
        state = fitted_state(name, pretrained_weights, shapes)
        missing, unexpected = trunk.load_state_dict(state, strict=False)
        assert not unexpected and all(k.endswith(OPTIONAL_SUFFIXES) for k in missing)
    if name != "small-cnn" and in_channels == 1:
        trunk = RepeatChannels(trunk)
    return trunk, size


def _build(name: str, in_channels: int, googlenet_transform_input: bool = False):
    if name == "small-cnn":
        trunk = SmallCNN(in_channels)
        return trunk, trunk.output_size
    import torchvision

    if name == "googlenet":
        trunk = torchvision.models.googlenet(
            weights=None,
            aux_logits=False,
            init_weights=True,
            transform_input=googlenet_transform_input,
        )
    else:
        trunk = getattr(torchvision.models, name)(weights=None)
    size = trunk.fc.in_features
    trunk.fc = nn.Identity()
    return trunk, size


def _shapes(name: str, in_channels: int = 3) -> Dict[str, torch.Size]:
    """The trunk's parameter and buffer shapes, from a model built on the meta device
    (no memory, no initialisation cost)."""
    with torch.device("meta"):
        trunk, _ = _build(name, in_channels)
    return {k: v.shape for k, v in trunk.state_dict().items()}


def fitted_state(name: str, path: str, shapes: Mapping[str, torch.Size]) -> Dict[str, torch.Tensor]:
    """The trunk's tensors from ``path``, without the classifier head; a WeightsError
    (one line, with the fix) when the file is unreadable or does not fit ``shapes``."""
    state = drop_prefixes(read_state_dict(path), HEADS.get(name, ()))
    misfit = compare_to(state, shapes)
    if misfit:
        raise WeightsError(describe_misfit(misfit, path, name, _likely_backbone(state, name)))
    return state


def check_pretrained_weights(name: str, path: str, in_channels: int = 3) -> None:
    """Raise the WeightsError ``make_trunk`` would, without building the trunk."""
    fitted_state(name, path, _shapes(name, in_channels))


def _likely_backbone(state: Mapping[str, torch.Tensor], chosen: str) -> str:
    """The torchvision backbone these weights fit exactly, or ''."""
    for other in BACKBONES:
        if other in (chosen, "small-cnn") or other in LITE_BACKBONES:
            continue
        if not compare_to(drop_prefixes(state, HEADS.get(other, ())), _shapes(other)):
            return other
    return ""


def random_init_problem(name: str) -> str:
    """Why the paper's protocol needs pretrained weights, for ``name``."""
    why = "the paper fine-tunes an ImageNet-pretrained trunk"
    if name == "googlenet":
        # measured: torchvision googlenet(weights=None, aux_logits=False, init_weights=True),
        # eval mode, random input: features of norm about 1.4e-10
        why += (
            "; a randomly initialised googlenet gives features of norm about 1e-10 in eval "
            "mode (its 0.01-std weights shrink the signal at every layer and BatchNorm's "
            "starting running statistics do not restore it), so all images embed alike "
            "and R@1 is near chance"
        )
    return (
        f"--preset paper without --pretrained-weights: {why}; give --pretrained-weights PATH "
        "(a local ImageNet state dict), or --allow-random-init to train from scratch anyway"
    )


def trunk_weights(name: str, pretrained_weights: Optional[str]) -> Optional[Dict[str, Any]]:
    """The weights a trunk starts from, as a cache key records them: the file's name
    and sha256, or None for a random initialisation (the seed then decides it)."""
    path = weights_file(name) if name in LITE_BACKBONES else pretrained_weights
    if not path:
        return None
    return {"file": os.path.basename(path), "sha256": file_sha256(path)}
