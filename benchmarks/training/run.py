"""One (loss, seed) run: seeded parts, PML's trainer (after a warm start, where
asked), an evaluation per epoch, and the record written to
runs/<loss>__seed<seed>.json."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import torch

from benchmarks.config import RunConfig, config_hash, run_options
from benchmarks.console import Console
from benchmarks.data.splits import DataSplits
from benchmarks.diagnostics import MarginDiagnostics
from benchmarks.environment import describe_device, git_commit
from benchmarks.evaluation.evaluate import QUERY_HITS, Evaluation
from benchmarks.evaluation.hierarchy import HierarchyTracker, tree_record
from benchmarks.evaluation.selection import selected_checkpoint
from benchmarks.training.epochs import EpochEnd, train
from benchmarks.training.parts import (
    build_models,
    build_optimizers,
    build_sampler,
    build_tree_hook,
    distribute,
)
from benchmarks.training.seeding import set_seed
from benchmarks.training.trainer import TrainerParts, build_trainer, make_logging
from benchmarks.training.warm_start import WarmStarts, WarmState
from benchmarks.variants import build_loss, choices_of
from pml_htl.losses import HierarchicalTripletLoss


def world() -> Tuple[int, int]:
    """(rank, world size); (0, 1) outside a process group."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def run_one(
    loss_name: str,
    seed: int,
    cfg: RunConfig,
    splits: DataSplits,
    calculator,
    device: torch.device,
    console: Optional[Console] = None,
    warm_starts: Optional[WarmStarts] = None,
) -> Optional[Dict[str, Any]]:
    """Train one loss from one seed, evaluating as it goes; rank 0 returns the run's
    record. ``warm_starts``: the comparison's warm phases, trained once per seed
    (default: this run trains its own, where it has a warm start)."""
    rank, world_size = world()
    console = console or Console(rank=rank)
    options = run_options(loss_name, cfg)
    warm: Optional[WarmState] = None
    if options["warm_start"]:
        if world_size > 1:
            raise SystemExit("error: --warm-start runs in one process (no torchrun)")
        warm = (warm_starts or WarmStarts()).get(
            seed, options["warm_start"], cfg, splits, calculator, device, console
        )
    set_seed(seed)
    trunk, embedder = build_models(cfg, splits.channels, device, splits.feature_size)
    record_keeper, container = (
        make_logging(cfg.out, loss_name, seed, cfg.logs) if rank == 0 else (None, None)
    )
    hp = cfg.hyperparameters[loss_name]
    loss, miner, loss_optimizer = build_loss(loss_name, hp, collect_stats=record_keeper is not None)
    sampler = build_sampler(loss_name, seed, cfg, splits.train_labels, world_size)
    tree_consumers = [loss, sampler]  # the loss itself, not its torchrun wrapper
    models = {"trunk": trunk, "embedder": embedder}
    if world_size > 1:
        models, loss, miner = distribute(models, loss, miner, device)
    optimizers = build_optimizers(cfg, models, loss, loss_optimizer)
    tree_hook = build_tree_hook(loss_name, tree_consumers, splits, cfg, console.bars)
    evaluation = Evaluation(
        (trunk, embedder), splits, calculator, device, cfg, record_keeper, rank, console.bars
    )
    name = f"{loss_name} seed {seed}"
    rebuilds = options["rebuild"] == "every_epoch"
    epoch_end = EpochEnd(cfg, evaluation, tree_hook, name, console, world_size, rebuilds)
    if tree_hook is not None and splits.train_superclasses is not None and rank == 0:
        epoch_end.hierarchy = HierarchyTracker(splits.train_labels, splits.train_superclasses)
    if tree_hook is not None and isinstance(loss, HierarchicalTripletLoss) and rank == 0:
        epoch_end.diagnostics = MarginDiagnostics(loss, options["classes_per_anchor"])
    parts = TrainerParts(
        models=models,
        optimizers=optimizers,
        loss=loss,
        miner=miner,
        sampler=sampler,
        end_of_epoch=epoch_end,
        end_of_iteration=container.end_of_iteration_hook if container is not None else None,
    )
    trainer = build_trainer(cfg, splits, device, parts)
    start = 0
    if warm is not None:
        warm.continue_in(models, optimizers, evaluation)
        start = warm.iterations
    train_seconds = train(trainer, evaluation, epoch_end, cfg.evaluate_start, start)
    if warm is not None:
        train_seconds += warm.train_seconds
    if epoch_end.diagnostics is not None:
        epoch_end.finish_diagnostics_period()
        epoch_end.diagnostics.close()
    if rank != 0:
        return None
    result = collect_result(
        loss_name, seed, cfg, evaluation.curve, epoch_end, train_seconds, device
    )
    result["sampler"] = options["sampler"]
    if warm is not None:
        result["warm_start"] = warm.record()
    if splits.feature_caches is not None:
        result["feature_caches"] = splits.feature_caches
    if evaluation.validation is not None:
        result["validation_classes"] = [int(c) for c in splits.validation_classes]
        result["validation_curve"] = evaluation.validation_curve
        result["selected_checkpoint"] = selected_checkpoint(
            evaluation.validation_curve, evaluation.curve
        )
    if epoch_end.last_tree is not None:
        result["tree"] = tree_record(
            epoch_end.last_tree,
            splits.train_labels,
            splits.train_superclasses,
            splits.superclass_names,
            splits.class_names,
            epoch_end.last_label_fn,
        )
    return result


def collect_result(
    loss_name: str,
    seed: int,
    cfg: RunConfig,
    curve: List[Dict[str, Any]],
    epoch_end: EpochEnd,
    train_seconds: float,
    device: torch.device,
) -> Dict[str, Any]:
    """The run's record, as written to runs/<loss>__seed<seed>.json."""
    iterations = cfg.epochs * cfg.iters_per_epoch
    hierarchy = {} if epoch_end.hierarchy is None else {"hierarchy": epoch_end.hierarchy.entries}
    if epoch_end.diagnostics is not None:
        hierarchy["diagnostics"] = epoch_end.diagnostics.entries
    return {
        "loss": loss_name,
        "seed": seed,
        "config_hash": config_hash(cfg, loss_name),
        "hyperparameters": cfg.hyperparameters[loss_name],
        "choices": choices_of(loss_name),
        "final": {
            k: v for k, v in curve[-1].items() if k not in ("epoch", "iteration", QUERY_HITS)
        },
        QUERY_HITS: curve[-1].get(QUERY_HITS),
        "curve": [{k: v for k, v in point.items() if k != QUERY_HITS} for point in curve],
        "iterations": iterations,
        "train_seconds": train_seconds,
        "tree_seconds": epoch_end.tree_seconds,
        "seconds_per_iteration": train_seconds / iterations,
        "git_commit": git_commit(),
        "device": describe_device(device),
        **hierarchy,
    }
