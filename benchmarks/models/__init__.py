"""The models the benchmark trains: trunks (backbones.py; the pretrained
EfficientNet-Lite ones in efficientnet_lite.py), their pretrained weights, read
from a local file and checked against the trunk (weights.py), and the embedder on
top (embedders.py)."""

from typing import Tuple

from benchmarks.models.backbones import (
    BACKBONE_SETTINGS,
    BACKBONES,
    NORMALISES_INPUT,
    SmallCNN,
    check_pretrained_weights,
    make_trunk,
    random_init_problem,
    trunk_weights,
)
from benchmarks.models.efficientnet_lite import LITE_BACKBONES, SMALL_IMAGE_SIZE, missing_extra
from benchmarks.models.embedders import EMBEDDERS, make_embedder
from benchmarks.models.weights import WeightsError

__all__ = [
    "BACKBONES",
    "EMBEDDERS",
    "LITE_BACKBONES",
    "NORMALISES_INPUT",
    "SMALL_IMAGE_SIZE",
    "SmallCNN",
    "WeightsError",
    "check_pretrained_weights",
    "make_embedder",
    "make_trunk",
    "missing_extra",
    "random_init_problem",
    "settings_read_by_backbone",
    "trunk_weights",
]


def settings_read_by_backbone(backbone: str) -> Tuple[str, ...]:
    """The scoped settings of a run that ``backbone`` reads."""
    return BACKBONE_SETTINGS[backbone]
