"""The models the benchmark trains: trunks (backbones.py) and their pretrained
weights, read from a local file and checked against the trunk (weights.py)."""

from typing import Tuple

from benchmarks.models.backbones import (
    BACKBONE_SETTINGS,
    BACKBONES,
    SmallCNN,
    check_pretrained_weights,
    make_trunk,
    random_init_problem,
)
from benchmarks.models.weights import WeightsError

__all__ = [
    "BACKBONES",
    "SmallCNN",
    "WeightsError",
    "check_pretrained_weights",
    "make_trunk",
    "random_init_problem",
    "settings_read_by_backbone",
]


def settings_read_by_backbone(backbone: str) -> Tuple[str, ...]:
    """The scoped settings of a run that ``backbone`` reads."""
    return BACKBONE_SETTINGS[backbone]
