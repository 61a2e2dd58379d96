"""Every name of pytorch-metric-learning 2 the benchmark uses that PML 3 moves or
drops: its trainer and the trainer's label remapping, the record-keeper logging
presets, AccuracyCalculator's module, the package version. A switch to PML 3
touches this file only.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import os
import warnings
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytorch_metric_learning
from pytorch_metric_learning.utils.accuracy_calculator import (
    EQUALITY,
    AccuracyCalculator,
    maybe_get_avg_of_avgs,
    nan_accuracy,
    try_getting_not_lone_labels,
)

__all__ = [
    "EQUALITY",
    "AccuracyCalculator",
    "log_accuracies",
    "make_record_keeper",
    "maybe_get_avg_of_avgs",
    "metric_loss_trainer",
    "nan_accuracy",
    "pml_version",
    "record_keeper_missing",
    "trainer_label_mapper",
    "try_getting_not_lone_labels",
]


def pml_version() -> str:
    return pytorch_metric_learning.__version__


# --------------------------------------------------------------------------- trainer
def metric_loss_trainer(**kwargs: Any) -> Any:
    """PML's MetricLossOnly trainer, built from its keyword arguments. A model
    without parameters (a frozen trunk's identity) has no optimizer, and PML's
    warning that it lacks one is left out."""
    from pytorch_metric_learning import trainers

    idle = [name for name, m in kwargs["models"].items() if not any(True for _ in m.parameters())]
    unwarned = _WithoutLines([f'optimizers is missing "{name}_optimizer"' for name in idle])
    logger = logging.getLogger("PML")
    logger.addFilter(unwarned)
    try:
        return trainers.MetricLossOnly(**kwargs)
    finally:
        logger.removeFilter(unwarned)


@contextlib.contextmanager
def quiet_training() -> Iterator[None]:
    """PML 2's trainer formats its loss tensor for the progress bar, and torch warns
    about it once per process ("Converting a tensor with requires_grad=True to a
    scalar"): noise in every log, left out while the trainer trains."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="Converting a tensor with requires_grad=True", category=UserWarning
        )
        yield


class _WithoutLines(logging.Filter):
    """Drops the log records whose message is one of ``lines``."""

    def __init__(self, lines: List[str]):
        super().__init__()
        self.lines = set(lines)

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() not in self.lines


def trainer_label_mapper(trainer: Any) -> Callable:
    """The labels the trainer's loss sees, from the data set's labels (the trainer may
    remap them: set_min_label_to_zero, label_hierarchy_level)."""
    from pytorch_metric_learning.utils import common_functions as c_f

    level, mapper = trainer.label_hierarchy_level, trainer.label_mapper
    return lambda labels: c_f.process_label(labels, level, mapper)


# --------------------------------------------------------------------------- record-keeper
@functools.lru_cache(maxsize=None)
def record_keeper_missing() -> Optional[str]:
    """Why PML's record-keeper logging (CSV and TensorBoard) cannot run, or None.
    Checked once: PML would log an error block for every run."""
    for module in ("record_keeper", "tensorboard"):
        try:
            importlib.import_module(module)
        except ImportError as e:
            return str(e)
    return None


def make_record_keeper(folder: str) -> Tuple[Any, Any]:
    """PML's record-keeper writing CSV and TensorBoard logs under ``folder``, and the
    hook container around it."""
    from pytorch_metric_learning.utils import logging_presets

    record_keeper, _, _ = logging_presets.get_record_keeper(
        os.path.join(folder, "csv"), os.path.join(folder, "tensorboard")
    )
    return record_keeper, logging_presets.get_hook_container(record_keeper)


def log_accuracies(record_keeper: Any, numbers: Dict[str, float], iteration: int) -> None:
    """Accuracy numbers into the record-keeper's logs, saved at once."""
    record_keeper.update_records(numbers, iteration, parent_name="accuracies")
    record_keeper.save_records()
