"""A comparison from its RunConfig: the data, every (loss, seed) run not finished
yet (--tune's searches first), and the reports after each run.

Re-running with the same --out skips the runs already finished, when they were
made with the same configuration (config_hash); a run made otherwise is an error.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from benchmarks import tune
from benchmarks.atomic_files import atomic_write
from benchmarks.config import RunConfig, config_hash
from benchmarks.console import Console
from benchmarks.data import DataError, DataSplits, image_transforms, load_dataset
from benchmarks.data.spec import Transforms
from benchmarks.data.validation import hold_out, validation_classes
from benchmarks.environment import describe_device, git_commit, package_versions
from benchmarks.evaluation import recall_ks
from benchmarks.evaluation.accuracy import make_accuracy_calculator
from benchmarks.evaluation.faiss_device import describe_knn
from benchmarks.features import FrozenFeatures
from benchmarks.models import NORMALISES_INPUT
from benchmarks.pml_compat import record_keeper_missing
from benchmarks.report import write_reports
from benchmarks.training.run import run_one
from benchmarks.training.warm_start import WarmStarts
from benchmarks.variants import DASHED, titles_for


def init_distributed(cfg: RunConfig) -> Tuple[int, int, RunConfig]:
    """Join the process group torchrun describes (WORLD_SIZE > 1): gloo on the CPU,
    nccl on GPUs; each process then takes its share of the CPU threads. Returns
    (rank, world size, the configuration with this process's device)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return 0, 1, cfg
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cfg.device.startswith("cuda"):
        cfg = cfg.replace(device=f"cuda:{local_rank}")
        torch.cuda.set_device(local_rank)
        backend = "nccl"
    else:
        backend = "gloo"
        local_size = int(os.environ.get("LOCAL_WORLD_SIZE", str(size)))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_size))
    torch.distributed.init_process_group(backend)
    return torch.distributed.get_rank(), size, cfg


# --------------------------------------------------------------------------- the data
def transforms_of(cfg: RunConfig) -> Transforms:
    """The data set's (train, eval) transforms for the run's trunk (photos are left
    unnormalised for a trunk that normalises its input itself)."""
    normalize = cfg.backbone not in NORMALISES_INPUT
    return image_transforms(cfg.dataset, cfg.augment, cfg.image_size, normalize)


def load_splits(cfg: RunConfig, progress: bool) -> DataSplits:
    """The configured data set's splits, with its transforms; a DataError is one
    error line."""
    train_tf, eval_tf = transforms_of(cfg)
    options: Dict[str, Any] = dict(data_root=cfg.data_root, train_classes_file=cfg.train_classes)
    if cfg.applies("glyph_samples"):
        options["glyph_samples_per_class"] = cfg.glyph_samples
    try:
        return load_dataset(
            cfg.dataset,
            train_transform=train_tf,
            eval_transform=eval_tf,
            progress=progress,
            **options,
        )
    except DataError as e:
        raise SystemExit(f"error: {e}")


def check_classes_per_batch(cfg: RunConfig, train_labels: np.ndarray) -> None:
    """A batch holds B / t classes (t samples each): the training split must have them."""
    needed = cfg.batch_size // cfg.samples_per_class
    available = len(np.unique(train_labels))
    if available < needed:
        raise SystemExit(
            f"error: the training split holds {available} classes, but --batch-size "
            f"{cfg.batch_size} with --samples-per-class {cfg.samples_per_class} needs "
            f"{needed} classes per batch: lower --batch-size or use a data set with more classes"
        )


def splits_per_seed(
    cfg: RunConfig, splits: DataSplits, device: torch.device, console: Console
) -> Callable[[int], DataSplits]:
    """What the runs of a seed train and evaluate on: the images, or a frozen trunk's
    cached features of them (--freeze-trunk); without the held-out validation
    classes (--select-on-val), which every seed holds out alike."""
    frozen = FrozenFeatures(cfg, splits, transforms_of(cfg), device, console)
    held_out = None
    if cfg.select_on_val:
        try:
            held_out = validation_classes(splits.train_labels, cfg.val_classes)
        except DataError as e:
            raise SystemExit(f"error: {e}")
    prepared: Dict[int, DataSplits] = {}

    def for_seed(seed: int) -> DataSplits:
        if seed not in prepared:
            seed_splits = frozen.splits_for(seed) if cfg.freeze_trunk else splits
            if held_out is not None:
                try:
                    seed_splits = hold_out(seed_splits, held_out)
                except DataError as e:
                    raise SystemExit(f"error: {e}")
            prepared[seed] = seed_splits
        return prepared[seed]

    return for_seed


def describe_environment(device: torch.device) -> Dict[str, Any]:
    return {
        "versions": package_versions(),
        "git_commit": git_commit(),
        "device": describe_device(device),
        "knn": describe_knn(device),
        "torch_threads": torch.get_num_threads(),
    }


# --------------------------------------------------------------------------- the runs
def run_path(out: str, loss: str, seed: int) -> str:
    return os.path.join(out, "runs", f"{loss}__seed{seed}.json")


def finished_run(cfg: RunConfig, loss: str, seed: int) -> Optional[Dict[str, Any]]:
    """The record of a run an earlier call finished with this configuration, or None."""
    path = run_path(cfg.out, loss, seed)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        done = json.load(f)
    if done.get("config_hash") != config_hash(cfg, loss):
        raise SystemExit(
            f"error: {path} was made with another configuration; use another --out or remove it"
        )
    return done


def run_all(
    cfg: RunConfig, console: Console, rank: int, world_size: int
) -> Tuple[RunConfig, List[Dict[str, Any]]]:
    """Every (loss, seed) run not finished yet, and the reports after each. Returns
    the configuration as recorded (the data's description and Recall@K cut-offs
    filled in, tuned hyper-parameters) and the runs."""
    device = torch.device(cfg.device)
    splits = load_splits(cfg, console.bars)
    check_classes_per_batch(cfg, splits.train_labels)
    seed_splits = splits_per_seed(cfg, splits, device, console)
    ks, ks_notice = recall_ks.choose(splits, cfg.recall_ks, cfg.dataset)
    cfg = cfg.replace(
        recall_ks=ks,
        data=splits.description,
        verification=splits.pairs.description if splits.pairs is not None else None,
    )
    calculator = make_accuracy_calculator(recall_at_ks=tuple(cfg.recall_ks), device=device)
    environment = describe_environment(device)
    missing = record_keeper_missing()
    if missing:
        console.say(f"CSV/TensorBoard logs skipped: {missing} (pip install -e .[hooks])")
    if ks_notice:
        console.say(ks_notice)
    console.say(
        f"data: {splits.description}; device: {environment['device']}; "
        f"k-NN: {environment['knn']}; processes: {world_size}"
    )
    if cfg.tune is not None:
        cfg = tune_all(cfg, seed_splits(tune.TUNE_SEED), calculator, device, console, world_size)
    titles = titles_for(cfg.sampler)
    warm_starts = WarmStarts()
    runs = []
    for loss, seed in [(loss, seed) for loss in cfg.losses for seed in cfg.seeds]:
        done = finished_run(cfg, loss, seed)
        if done is not None:
            console.say(f"skip {loss} seed {seed}: already in {run_path(cfg.out, loss, seed)}")
            runs.append(done)
            continue
        run_splits = seed_splits(seed)  # a frozen trunk's features: built before the clock
        check_classes_per_batch(cfg, run_splits.train_labels)
        start = time.perf_counter()
        result = run_one(loss, seed, cfg, run_splits, calculator, device, console, warm_starts)
        if rank == 0:
            result["wall_seconds"] = time.perf_counter() - start
            atomic_write(run_path(cfg.out, loss, seed), json.dumps(result, indent=1))
            runs.append(result)
            console.say(
                f"{loss} seed {seed}: R@1 {100 * result['final']['recall_at_1']:.1f} "
                f"in {result['wall_seconds']:.0f} s"
            )
            write_reports(runs, cfg, environment, titles, DASHED)
        if world_size > 1:
            torch.distributed.barrier()  # every rank sees the finished run's file
    if rank == 0:
        console.table(write_reports(runs, cfg, environment, titles, DASHED))
    return cfg, runs


def tune_all(
    cfg: RunConfig,
    splits: DataSplits,
    calculator,
    device: torch.device,
    console: Console,
    world_size: int,
) -> RunConfig:
    """--tune: each loss's search (benchmarks/tune.py). Returns the configuration with
    the best configurations as its hyper-parameters and every trial in its
    ``tuning`` (results.json; also tuning/tuning.json)."""
    if world_size > 1:
        raise SystemExit("error: --tune runs in one process (no torchrun)")
    quiet = Console(quiet=True)

    def train_fold(loss: str, trial_cfg: RunConfig, fold: DataSplits) -> Dict[str, float]:
        trial_cfg = trial_cfg.replace(out=os.path.join(cfg.out, "tuning"))
        record = run_one(loss, tune.TUNE_SEED, trial_cfg, fold, calculator, device, quiet)
        return record["final"]

    records = {}
    start = time.perf_counter()
    for loss in cfg.losses:
        records[loss] = tune.tune_loss(loss, cfg, splits, train_fold, console.say)
        best = records[loss]
        console.say(
            f"tune {loss}: best trial {best['best_trial'] + 1}, validation MAP@R "
            f"{100 * best['best_value']:.1f}: {best['best_hyperparameters']}"
        )
    hyperparameters = dict(cfg.hyperparameters)
    for loss, record in records.items():
        hyperparameters[loss] = record["best_hyperparameters"]
    tuning = {
        "budget": cfg.tune,
        "seconds_this_call": time.perf_counter() - start,
        "studies": records,
    }
    atomic_write(os.path.join(cfg.out, "tuning", "tuning.json"), json.dumps(tuning, indent=1))
    return cfg.replace(hyperparameters=hyperparameters, tuning=tuning)
