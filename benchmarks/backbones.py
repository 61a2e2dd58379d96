"""Trunks and embedders for benchmarks/compare.py (never downloads weights)."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn

BACKBONES = ("small-cnn", "resnet18", "resnet50", "googlenet")


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
    name: str, in_channels: int, pretrained_weights: Optional[str] = None
) -> Tuple[nn.Module, int]:
    """(trunk, output size). ``pretrained_weights`` is a local state_dict file."""
    if name not in BACKBONES:
        raise ValueError(f"--backbone must be one of {BACKBONES}, got {name!r}")
    if name == "small-cnn":
        trunk = SmallCNN(in_channels)
        size = trunk.output_size
    else:
        import torchvision

        if name == "googlenet":
            trunk = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True)
        else:
            trunk = getattr(torchvision.models, name)(weights=None)
        size = trunk.fc.in_features
        trunk.fc = nn.Identity()
    if pretrained_weights:
        state = torch.load(pretrained_weights, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith(("fc.", "aux"))}
        missing, _ = trunk.load_state_dict(state, strict=False)
        if missing:
            raise ValueError(
                f"--pretrained-weights {pretrained_weights!r} does not fit {name}: "
                f"missing {missing[:5]}"
            )
    if name != "small-cnn" and in_channels == 1:
        trunk = RepeatChannels(trunk)
    return trunk, size
