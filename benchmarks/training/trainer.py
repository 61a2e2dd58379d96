"""PML's MetricLossOnly trainer for one run, and its CSV and TensorBoard logs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

import torch

from benchmarks.config import RunConfig
from benchmarks.data.splits import DataSplits
from benchmarks.pml_compat import make_record_keeper, metric_loss_trainer, record_keeper_missing


@dataclass
class TrainerParts:
    """What one run hands the trainer besides the configuration and the data."""

    models: Dict[str, torch.nn.Module]
    optimizers: Dict[str, torch.optim.Optimizer]
    loss: Any
    miner: Optional[Any]
    #: batches of B (or this rank's share of them)
    sampler: Any
    end_of_epoch: Callable[[Any], bool]
    end_of_iteration: Optional[Callable[[Any], Any]] = None


def build_trainer(
    cfg: RunConfig, splits: DataSplits, device: torch.device, parts: TrainerParts
) -> Any:
    """PML's MetricLossOnly trainer for one run."""
    return metric_loss_trainer(
        models=parts.models,
        optimizers=parts.optimizers,
        batch_size=parts.sampler.batch_size,  # B, or this rank's share of it
        loss_funcs={"metric_loss": parts.loss},
        mining_funcs={"tuple_miner": parts.miner} if parts.miner is not None else {},
        dataset=splits.train,
        sampler=parts.sampler,
        iterations_per_epoch=cfg.iters_per_epoch,
        dataloader_num_workers=cfg.num_workers,
        data_device=device,
        end_of_iteration_hook=parts.end_of_iteration,
        end_of_epoch_hook=parts.end_of_epoch,
        set_min_label_to_zero=True,
        dataset_labels=splits.train_labels,
    )


def make_logging(out: str, loss: str, seed: int, wanted: bool = True) -> Tuple[Any, Any]:
    """PML's record-keeper and hook container (CSV and TensorBoard logs) when wanted
    and the hooks extra is installed, else (None, None)."""
    if not wanted or record_keeper_missing():
        return None, None
    return make_record_keeper(os.path.join(out, "logs", f"{loss}__seed{seed}"))
