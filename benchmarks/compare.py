"""HTL beside the contrastive, triplet, margin and multi-similarity losses, at the same budget.

Everything but the loss (and the batch sampler HTL's method prescribes) is
held fixed: trunk, embedder, embedding size, optimizer, learning rate, batch
size, iterations, data and seeds. Accuracy comes from PML's AccuracyCalculator
with Recall@K added, on the test split of unseen classes.

    python benchmarks/compare.py                 # embedded glyph data, about 15 min on 2 CPU cores
    python benchmarks/compare.py --quick         # about 2 min
    python benchmarks/compare.py --seeds 0 1 2 --ablations
    python benchmarks/compare.py --quick > log 2>&1   # one line per epoch and per run

Re-running with the same --out skips the (loss, seed) runs already finished.
Progress bars only on a terminal; --quiet (or TQDM_DISABLE=1) turns them off.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import hashlib
import importlib
import json
import logging
import os
import platform
import random
import subprocess
import sys
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
import tqdm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks import tune  # noqa: E402
from benchmarks.data import (  # noqa: E402
    AUGMENTATIONS,
    DATASETS,
    DataError,
    DataSplits,
    default_augment,
    image_transforms,
    load_dataset,
    settings_read_by_dataset,
)
from benchmarks.diagnostics import MarginDiagnostics  # noqa: E402
from benchmarks.diagnostics import describe as describe_diagnostics  # noqa: E402
from benchmarks.evaluation import recall_ks  # noqa: E402
from benchmarks.evaluation.hierarchy import HierarchyTracker  # noqa: E402
from benchmarks.evaluation.verification import verification_metrics  # noqa: E402
from benchmarks.models import (  # noqa: E402
    BACKBONES,
    WeightsError,  # noqa: E402
    check_pretrained_weights,
    make_trunk,
    random_init_problem,
)
from benchmarks.report import atomic_write, write_reports  # noqa: E402
from benchmarks.variants import (  # noqa: E402
    ABLATIONS,
    CHOICE_ABLATIONS,
    CHOICE_VARIANTS,
    DASHED,
    DIAGNOSIS_ABLATIONS,
    HYPERPARAMETERS,
    LOSS_TITLES,
    MAIN_LOSSES,
    RUN_OPTIONS,
    USES_AN_SAMPLER,
    USES_TREE,
    build_loss,
)
from pml_htl.losses import HierarchicalTripletLoss  # noqa: E402

PRESETS = {
    "cpu": {},
    # The paper's protocol on a GPU: BN-Inception's nearest torchvision relative,
    # 512-d, 227-pixel crops, m = 4 classes per anchor and t = 4 images per class.
    "paper": {
        "backbone": "googlenet",
        "embedding_size": 512,
        "image_size": 227,
        "batch_size": 128,
        "optimizer": "sgd",
        "lr": 1e-3,
        "epochs": 30,
        "iters_per_epoch": 200,
    },
}

DEFAULTS = dict(
    dataset="glyphs",
    backbone="small-cnn",
    embedding_size=64,
    batch_size=64,
    classes_per_anchor=4,
    samples_per_class=4,
    epochs=10,
    iters_per_epoch=100,
    lr=1e-3,
    weight_decay=1e-4,
    optimizer="adam",
    image_size=224,
    glyph_samples=40,
    data_root=None,
    train_classes=None,
    pretrained_weights=None,
    googlenet_transform_input="auto",
    augment=None,  # the data set's default: DEFAULT_AUGMENT
)
QUICK = dict(epochs=3, iters_per_epoch=40, glyph_samples=24)

#: The data sets image_transforms crops to --image-size (the others keep their size).
RESIZED_DATASETS = tuple(d for d in DATASETS if "image_size" in settings_read_by_dataset(d))
TORCHVISION_BACKBONES = tuple(b for b in BACKBONES if b != "small-cnn")
#: Each data set's default augmentation: the photo recipe for photos, none where the
#: published glyph and Fashion-MNIST results were made without.
DEFAULT_AUGMENT = {d: default_augment(d) for d in DATASETS}
#: Settings that only some data sets or backbones read: setting -> (the setting that
#: decides, the values it applies to). Recorded only where they apply; a flag for
#: one where it does not is an error.
SCOPED_SETTINGS = {
    "image_size": ("dataset", RESIZED_DATASETS),
    "glyph_samples": ("dataset", ("glyphs",)),
    "data_root": ("dataset", tuple(d for d in DATASETS if d != "glyphs")),
    "train_classes": ("dataset", ("folder",)),
    "pretrained_weights": ("backbone", TORCHVISION_BACKBONES),
    "googlenet_transform_input": ("backbone", ("googlenet",)),
}


def run_options(loss_name: str, cfg: Dict[str, Any]) -> Dict[str, Any]:
    """m, t, the tree's view and rebuild policy of one loss: the configuration's,
    then its choice variant's, then its (tuned) hyper-parameters'."""
    options = {
        "classes_per_anchor": cfg["classes_per_anchor"],
        "samples_per_class": cfg["samples_per_class"],
        "tree_view": "clean",
        "rebuild": "every_epoch",
    }
    for source in (CHOICE_VARIANTS.get(loss_name, {}), cfg["hyperparameters"][loss_name]):
        options.update({k: v for k, v in source.items() if k in RUN_OPTIONS})
    if options.pop("statistics_from", None) == "training":
        options["tree_view"] = "training"
    return options


# --------------------------------------------------------------------------- utilities
def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def git_commit() -> Optional[str]:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return (commit + ("-dirty" if dirty else "")) or None
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> Dict[str, Optional[str]]:
    import pytorch_metric_learning

    import pml_htl

    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pytorch_metric_learning": pytorch_metric_learning.__version__,
        "pml_htl": pml_htl.__version__,
        "numpy": np.__version__,
    }
    for name in ("faiss", "torchvision", "record_keeper"):
        try:
            module = __import__(name)
            versions[name] = getattr(module, "__version__", "installed")
        except ImportError:
            versions[name] = None
    return versions


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


# --------------------------------------------------------------------------- console
def tqdm_disabled_by_environment() -> bool:
    """tqdm's own switch: TQDM_DISABLE set to anything but the empty string."""
    return bool(os.environ.get("TQDM_DISABLE"))


def _is_terminal(stream) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)())


class Console:
    """What compare.py prints. Only rank 0 prints.

    Progress bars only when stdout and stderr are both a terminal, and neither
    --quiet nor TQDM_DISABLE is given; without bars, one line per finished epoch
    and per finished run. --quiet prints the final table alone.
    """

    def __init__(self, quiet: bool = False, rank: int = 0):
        self.prints_table = rank == 0
        self.talks = rank == 0 and not quiet
        self.bars = (
            self.talks
            and not tqdm_disabled_by_environment()
            and _is_terminal(sys.stdout)
            and _is_terminal(sys.stderr)
        )

    def say(self, line: str) -> None:
        if not self.talks:
            return
        if self.bars:
            tqdm.tqdm.write(line)  # above the bars, not into them
        else:
            print(line, flush=True)

    def table(self, text: str) -> None:
        if self.prints_table:
            print(text, flush=True)

    def epoch_done(self, name: str, epoch: int, epochs: int, seconds: float, metrics) -> None:
        if self.bars:
            return  # the epoch bar shows it
        line = f"{name}: epoch {epoch}/{epochs}, {seconds:.1f} s"
        if metrics is not None:
            line += f", R@1 {100 * metrics['recall_at_1']:.1f}"
        self.say(line)

    def bar(self, **kwargs) -> tqdm.tqdm:
        return tqdm.tqdm(leave=False, disable=not self.bars, **kwargs)

    @contextlib.contextmanager
    def others_bars_off(self) -> Iterator[None]:
        """Without our bars, no bars from code that passes no disable= either (PML's
        trainer and tester). tqdm reads TQDM_DISABLE only once, when it is imported,
        so its default is changed here, for the block only."""
        if self.bars:
            yield
            return
        init = vars(tqdm.tqdm)["__init__"]
        tqdm.tqdm.__init__ = functools.partialmethod(init, disable=True)
        try:
            yield
        finally:
            tqdm.tqdm.__init__ = init


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


# --------------------------------------------------------------------------- evaluation
#: The final evaluation's per-query Recall@1 hits ("0"/"1" per query, in the query
#: set's order), kept for the paired tests between losses (benchmarks/stats/paired.py).
QUERY_HITS = "query_hits_at_1"


def query_hits_at_1(calculator, query, q_labels, ref, r_labels, ref_includes_query: bool) -> str:
    """Whether each query's nearest neighbour (itself left out) shares its class, by
    the accuracy calculator's own k-NN on the embeddings it sees (normalised or not)."""
    if getattr(calculator, "normalize_embeddings", False):
        query = torch.nn.functional.normalize(query.float(), dim=1)
        ref = query if ref_includes_query else torch.nn.functional.normalize(ref.float(), dim=1)
    _, indices = calculator.knn_func(query, 1, ref, ref_includes_query)
    hits = (r_labels[indices[:, 0].to(r_labels.device)] == q_labels).cpu().numpy()
    return "".join("1" if h else "0" for h in hits)


def embed(
    models, dataset, device, batch_size: int, num_workers: int, desc: str, progress: bool = False
):
    from pml_htl.tree_hooks import evaluation_mode

    trunk, embedder = models
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers
    )
    out, labels = [], []
    with evaluation_mode(trunk, embedder), torch.no_grad():
        for data, y in tqdm.tqdm(loader, desc=desc, leave=False, disable=not progress):
            out.append(embedder(trunk(data.to(device))).float())
            labels.append(torch.as_tensor(y))
    return torch.cat(out), torch.cat(labels).to(device)


def evaluate(
    models, splits: DataSplits, calculator, device, num_workers: int, progress: bool = False
) -> Dict[str, float]:
    bs, nw = 256, num_workers
    query, q_labels = embed(models, splits.query, device, bs, nw, "evaluate: embedding", progress)
    if splits.query_is_reference:
        metrics = calculator.get_accuracy(query, q_labels)
    else:
        ref, r_labels = embed(
            models, splits.reference, device, bs, nw, "evaluate: gallery", progress
        )
        metrics = calculator.get_accuracy(query, q_labels, ref, r_labels)
    metrics = {k: float(v) for k, v in metrics.items()}
    if splits.query_is_reference:
        metrics[QUERY_HITS] = query_hits_at_1(calculator, query, q_labels, query, q_labels, True)
    else:
        metrics[QUERY_HITS] = query_hits_at_1(calculator, query, q_labels, ref, r_labels, False)
    if splits.pairs is not None:  # face verification: the pairs index the query set
        metrics.update(verification_metrics(query, splits.pairs))
    return metrics


# --------------------------------------------------------------------------- one run
#: Left out of the hash that guards resuming: which runs to make and where to write
#: them, the loader workers, the shorthands whose values are recorded (preset,
#: quick), and the hyper-parameters of the other losses.
NOT_HASHED = (
    "losses",
    "seeds",
    "out",
    "num_workers",
    "preset",
    "quick",
    "hyperparameters",
    "tuning",
)


def config_hash(cfg: Dict[str, Any], loss: str) -> str:
    """What a finished run of ``loss`` must have been made with to be kept."""
    keep = {k: v for k, v in cfg.items() if k not in NOT_HASHED}
    keep["hyperparameters"] = cfg["hyperparameters"][loss]
    # settings added after results were published enter only when they are not at
    # their default, so those results stay valid
    if "augment" in keep and keep["augment"] == DEFAULT_AUGMENT.get(cfg.get("dataset")):
        del keep["augment"]
    if keep.get("tune", "given") is None:
        del keep["tune"]
    keep["choices"] = CHOICE_VARIANTS.get(loss, {})
    if keep.get("device", "").startswith("cuda:"):
        keep["device"] = "cuda"  # the local rank's index is not configuration
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


def run_path(out: str, loss: str, seed: int) -> str:
    return os.path.join(out, "runs", f"{loss}__seed{seed}.json")


def make_logging(out: str, loss: str, seed: int, wanted: bool = True):
    """PML's record-keeper and hook container (CSV and TensorBoard logs) when wanted
    and the hooks extra is installed, else (None, None)."""
    if not wanted or record_keeper_missing():
        return None, None
    from pytorch_metric_learning.utils import logging_presets

    folder = os.path.join(out, "logs", f"{loss}__seed{seed}")
    record_keeper, _, _ = logging_presets.get_record_keeper(
        os.path.join(folder, "csv"), os.path.join(folder, "tensorboard")
    )
    return record_keeper, logging_presets.get_hook_container(record_keeper)


def run_one(
    loss_name: str,
    seed: int,
    cfg: Dict[str, Any],
    splits: DataSplits,
    calculator,
    device,
    console: Optional[Console] = None,
) -> Optional[Dict[str, Any]]:
    """Train one loss from one seed, evaluating as it goes; rank 0 returns the run's record."""
    from pml_htl.tree.distributed import world

    rank, world_size = world()
    console = console or Console(rank=rank)
    set_seed(seed)
    trunk, embedder = build_models(cfg, splits.channels, device)
    record_keeper, container = (
        make_logging(cfg["out"], loss_name, seed, cfg.get("logs", True))
        if rank == 0
        else (None, None)
    )
    hp = cfg["hyperparameters"][loss_name]
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
    rebuilds = run_options(loss_name, cfg)["rebuild"] == "every_epoch"
    epoch_end = EpochEnd(cfg, evaluation, tree_hook, name, console, world_size, rebuilds)
    if tree_hook is not None and splits.train_superclasses is not None and rank == 0:
        epoch_end.hierarchy = HierarchyTracker(splits.train_labels, splits.train_superclasses)
    if tree_hook is not None and isinstance(loss, HierarchicalTripletLoss) and rank == 0:
        m = run_options(loss_name, cfg)["classes_per_anchor"]
        epoch_end.diagnostics = MarginDiagnostics(loss, m)
    trainer = build_trainer(
        cfg,
        splits,
        device,
        models=models,
        optimizers=optimizers,
        loss=loss,
        miner=miner,
        sampler=sampler,
        end_of_iteration=container.end_of_iteration_hook if container is not None else None,
        end_of_epoch=epoch_end,
    )
    train_seconds = train(
        trainer, cfg["epochs"], evaluation, epoch_end, cfg.get("evaluate_start", True)
    )
    if epoch_end.diagnostics is not None:
        epoch_end.finish_diagnostics_period()
        epoch_end.diagnostics.close()
    if rank != 0:
        return None
    return collect_result(loss_name, seed, cfg, evaluation.curve, epoch_end, train_seconds, device)


def build_models(cfg, channels: int, device) -> Tuple[torch.nn.Module, torch.nn.Module]:
    """The trunk and a linear embedder on top of it, on ``device``."""
    trunk, trunk_size = make_trunk(
        cfg["backbone"],
        channels,
        cfg.get("pretrained_weights"),
        cfg.get("googlenet_transform_input"),
    )
    embedder = torch.nn.Linear(trunk_size, cfg["embedding_size"])
    return trunk.to(device), embedder.to(device)


def build_sampler(loss_name: str, seed: int, cfg, train_labels, world_size: int):
    """Anchor-neighbour batches where HTL's method prescribes them (and for every loss
    under torchrun); PML's MPerClassSampler, t samples per class, otherwise."""
    from pytorch_metric_learning import samplers as pml_samplers

    from pml_htl import samplers

    options = run_options(loss_name, cfg)
    B, m, t = cfg["batch_size"], options["classes_per_anchor"], options["samples_per_class"]
    length = cfg["iters_per_epoch"] * B
    if loss_name in USES_AN_SAMPLER or world_size > 1:
        # under torchrun every sampler must hand each rank its slice of one global
        # batch: the baselines then get the A-N sampler without a tree, which draws
        # random classes, t samples each, as MPerClassSampler does
        return samplers.AnchorNeighborSampler(
            train_labels, B // (m * t), m, t, length_before_new_iter=length, seed=seed
        )
    return pml_samplers.MPerClassSampler(
        train_labels, t, batch_size=B, length_before_new_iter=length
    )


def distribute(models: Dict[str, torch.nn.Module], loss, miner, device):
    """torchrun: the models in DistributedDataParallel, the loss and miner gathering
    every rank's embeddings."""
    from pytorch_metric_learning.utils import distributed as pml_dist

    ddp_kw = {"device_ids": [device]} if device.type == "cuda" else {}
    DDP = torch.nn.parallel.DistributedDataParallel
    models = {name: DDP(model, **ddp_kw) for name, model in models.items()}
    loss = pml_dist.DistributedLossWrapper(loss)
    if miner is not None:
        miner = pml_dist.DistributedMinerWrapper(miner)
    return models, loss, miner


def make_optimizer(cfg, params, lr: float) -> torch.optim.Optimizer:
    if cfg["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=cfg["weight_decay"])
    return torch.optim.Adam(params, lr=lr, weight_decay=cfg["weight_decay"])


def build_optimizers(cfg, models: Dict[str, torch.nn.Module], loss, loss_optimizer):
    """One optimizer per model, named as PML's trainer expects; plain SGD for a loss
    with parameters of its own (the margin loss's beta)."""
    optimizers = {
        f"{name}_optimizer": make_optimizer(cfg, model.parameters(), cfg["lr"])
        for name, model in models.items()
    }
    if loss_optimizer is not None:
        name, lr = loss_optimizer
        optimizers[name] = torch.optim.SGD(loss.parameters(), lr=lr)
    return optimizers


def build_tree_hook(loss_name: str, consumers, splits: DataSplits, cfg, progress: bool):
    """The hook that rebuilds the class tree for the losses that use one, else None.
    Its statistics come from the tree view: the clean evaluation views of the
    training set, its augmented training views, or the training steps."""
    from pml_htl import tree_hooks

    if loss_name not in USES_TREE:
        return None
    consumers = [c for c in consumers if hasattr(c, "update_tree")]
    view = run_options(loss_name, cfg)["tree_view"]
    return tree_hooks.TreeRebuildHook(
        splits.train if view == "augmented" else splits.train_eval,
        consumers=consumers,
        num_workers=cfg["num_workers"],
        progress=progress,
        statistics_from="training" if view == "training" else "inference",
    )


class Evaluation:
    """Evaluates on the test split (rank 0 only) and keeps the accuracy curve and
    the time spent evaluating."""

    def __init__(
        self, models, splits: DataSplits, calculator, device, cfg, record_keeper, rank, progress
    ):
        self.models, self.splits, self.calculator, self.device = models, splits, calculator, device
        self.num_workers = cfg["num_workers"]
        self.iters_per_epoch = cfg["iters_per_epoch"]
        self.record_keeper = record_keeper
        self.rank = rank
        self.progress = progress
        self.curve: List[Dict[str, Any]] = []
        self.seconds = 0.0

    def __call__(self, epoch: int) -> Optional[Dict[str, float]]:
        if self.rank != 0:
            return None  # rank 0 evaluates and writes; the others train on
        start = time.perf_counter()
        metrics = evaluate(
            self.models, self.splits, self.calculator, self.device, self.num_workers, self.progress
        )
        self.seconds += time.perf_counter() - start
        iteration = epoch * self.iters_per_epoch
        self.curve.append({"epoch": epoch, "iteration": iteration, **metrics})
        if self.record_keeper is not None:
            numbers = {k: v for k, v in metrics.items() if k != QUERY_HITS}
            self.record_keeper.update_records(numbers, iteration, parent_name="accuracies")
            self.record_keeper.save_records()
        return metrics


class EpochEnd:
    """PML's end_of_epoch_hook: rebuild the tree (not after the last epoch), evaluate
    every eval_every epochs and after the last, report the epoch; under torchrun
    the other ranks wait."""

    def __init__(
        self,
        cfg,
        evaluation: Evaluation,
        tree_hook,
        name,
        console: Console,
        world_size,
        rebuilds: bool = True,
    ):
        self.epochs, self.eval_every = cfg["epochs"], cfg["eval_every"]
        self.evaluation, self.tree_hook = evaluation, tree_hook
        self.world_size = world_size
        self.name, self.console = name, console
        self.tree_seconds = 0.0
        self.iters_per_epoch = cfg["iters_per_epoch"]
        #: measures each new tree against the data set's superclasses, when it has some
        self.hierarchy: Optional[HierarchyTracker] = None
        #: HTL's margins, active triplets and far-negative share per tree
        self.diagnostics: Optional[MarginDiagnostics] = None
        #: False: the first tree is kept (the "rebuild": "first" diagnosis)
        self.rebuilds = rebuilds
        self.bar = console.bar(total=self.epochs, desc=f"{name}: epochs")
        self.epoch_started = time.perf_counter()

    def __call__(self, trainer) -> bool:
        if self.tree_hook is not None and trainer.epoch < self.epochs and self.rebuilds:
            self.rebuild_tree(trainer, trainer.epoch)
        seconds = time.perf_counter() - self.epoch_started
        metrics = None
        if trainer.epoch % self.eval_every == 0 or trainer.epoch == self.epochs:
            metrics = self.evaluation(trainer.epoch)
        self.bar.update(1)
        self.console.epoch_done(self.name, trainer.epoch, self.epochs, seconds, metrics)
        if self.world_size > 1:
            torch.distributed.barrier()  # the others wait while rank 0 evaluates
        self.epoch_started = time.perf_counter()
        return True

    def rebuild_tree(self, trainer, epoch: int) -> None:
        start = time.perf_counter()
        self.tree_hook(trainer)
        self.tree_seconds += time.perf_counter() - start
        if self.diagnostics is not None:
            self.finish_diagnostics_period()
            self.diagnostics.start(self.tree_hook.tree, epoch * self.iters_per_epoch)
        if self.hierarchy is not None:
            from pytorch_metric_learning.utils import common_functions as c_f

            level, mapper = trainer.label_hierarchy_level, trainer.label_mapper
            self.hierarchy.record(
                self.tree_hook.tree,
                epoch * self.iters_per_epoch,
                lambda labels: c_f.process_label(labels, level, mapper),  # as the hook maps
            )

    def finish_diagnostics_period(self) -> None:
        """Close the running tree's diagnostics and log them (one line)."""
        finished = self.diagnostics.finish()
        if finished is not None:
            self.console.say(f"{self.name}: {describe_diagnostics(finished)}")

    @property
    def measure_seconds(self) -> float:
        """Time spent measuring trees against superclasses (not training)."""
        return self.hierarchy.seconds if self.hierarchy is not None else 0.0


def build_trainer(
    cfg,
    splits: DataSplits,
    device,
    *,
    models,
    optimizers,
    loss,
    miner,
    sampler,
    end_of_iteration,
    end_of_epoch,
):
    """PML's MetricLossOnly trainer for one run."""
    from pytorch_metric_learning import trainers

    return trainers.MetricLossOnly(
        models=models,
        optimizers=optimizers,
        batch_size=sampler.batch_size,  # B, or this rank's share of it
        loss_funcs={"metric_loss": loss},
        mining_funcs={"tuple_miner": miner} if miner is not None else {},
        dataset=splits.train,
        sampler=sampler,
        iterations_per_epoch=cfg["iters_per_epoch"],
        dataloader_num_workers=cfg["num_workers"],
        data_device=device,
        end_of_iteration_hook=end_of_iteration,
        end_of_epoch_hook=end_of_epoch,
        set_min_label_to_zero=True,
        dataset_labels=splits.train_labels,
    )


def train(
    trainer, epochs: int, evaluation: Evaluation, epoch_end: EpochEnd, evaluate_start: bool = True
) -> float:
    """Evaluate the starting model (unless not ``evaluate_start``), build the first
    tree, train. Returns the training seconds: tree rebuilds count (they are part of
    HTL's cost), evaluations do not."""
    if evaluate_start:
        evaluation(0)
    eval_seconds_before = evaluation.seconds
    start = epoch_end.epoch_started = time.perf_counter()
    if epoch_end.tree_hook is not None:
        epoch_end.rebuild_tree(trainer, 0)  # the initial tree, from the starting model
    trainer.train(num_epochs=epochs)
    total = time.perf_counter() - start
    epoch_end.bar.close()
    return total - (evaluation.seconds - eval_seconds_before) - epoch_end.measure_seconds


def collect_result(loss_name, seed, cfg, curve, epoch_end: EpochEnd, train_seconds, device):
    """The run's record, as written to runs/<loss>__seed<seed>.json."""
    iterations = cfg["epochs"] * cfg["iters_per_epoch"]
    hierarchy = {} if epoch_end.hierarchy is None else {"hierarchy": epoch_end.hierarchy.entries}
    if epoch_end.diagnostics is not None:
        hierarchy["diagnostics"] = epoch_end.diagnostics.entries
    return {
        "loss": loss_name,
        "seed": seed,
        "config_hash": config_hash(cfg, loss_name),
        "hyperparameters": cfg["hyperparameters"][loss_name],
        "choices": CHOICE_VARIANTS.get(loss_name, {}),
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


# --------------------------------------------------------------------------- command line
def parse_hp(items: List[str], losses: List[str]) -> Dict[str, Dict[str, Any]]:
    """The hyper-parameters of ``losses``: HYPERPARAMETERS with --hp's overrides."""
    table = copy.deepcopy(HYPERPARAMETERS)
    for item in items or []:
        try:
            lhs, value = item.split("=", 1)
            loss, key = lhs.split(".", 1)
            value = float(value)
        except ValueError:
            raise SystemExit(f"error: --hp expects LOSS.KEY=VALUE with a number, got {item!r}")
        if loss not in table:
            raise SystemExit(f"error: --hp: unknown loss {loss!r}; choose from {sorted(table)}")
        if key not in table[loss]:
            raise SystemExit(
                f"error: --hp: {loss} has no hyper-parameter {key!r}: {sorted(table[loss])}"
            )
        if loss not in losses:
            raise SystemExit(
                f"error: --hp {item}: {loss} is not among the losses run ({' '.join(losses)})"
            )
        table[loss][key] = type(table[loss][key])(value)
    return {loss: table[loss] for loss in losses}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", choices=DATASETS, default=None)
    p.add_argument("--data-root", default=None, help="local data folder (never downloaded)")
    p.add_argument("--train-classes", default=None, help="folder: file naming the train classes")
    p.add_argument(
        "--losses",
        nargs="+",
        choices=MAIN_LOSSES + ABLATIONS + CHOICE_ABLATIONS + DIAGNOSIS_ABLATIONS,
        default=None,
    )
    p.add_argument("--ablations", action="store_true", help="add the three ablation rows")
    p.add_argument(
        "--choices",
        action="store_true",
        help="add HTL with each open choice set otherwise (linkage, level counting, L, m,\n"
        "the tree's statistics from the training steps)",
    )
    p.add_argument(
        "--diagnosis",
        action="store_true",
        help="add HTL with lambda = 0 and 0.5, with its first tree kept, and with its tree\n"
        "built from augmented training views",
    )
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    p.add_argument("--quick", action="store_true", help="a short run (about 2 minutes)")
    for key in (
        "embedding_size",
        "batch_size",
        "classes_per_anchor",
        "samples_per_class",
        "epochs",
        "iters_per_epoch",
        "image_size",
        "glyph_samples",
    ):
        p.add_argument("--" + key.replace("_", "-"), type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--weight-decay", type=float, default=None)
    p.add_argument("--optimizer", choices=["adam", "sgd"], default=None)
    p.add_argument(
        "--augment",
        choices=AUGMENTATIONS,
        default=None,
        help="training augmentation: standard (random resized crops and flips, the default\n"
        "for photos), light (small shifts and rotations: characters, digits), none\n"
        "(default for glyphs and Fashion-MNIST)",
    )
    p.add_argument("--backbone", choices=BACKBONES, default=None)
    p.add_argument("--pretrained-weights", default=None, help="local state_dict for the trunk")
    p.add_argument(
        "--googlenet-transform-input",
        choices=["auto", "on", "off"],
        default=None,
        help="googlenet's ImageNet input transform (auto: on with --pretrained-weights)",
    )
    p.add_argument(
        "--allow-random-init",
        action="store_true",
        help="--preset paper without --pretrained-weights: run anyway",
    )
    p.add_argument("--eval-every", type=int, default=1, help="evaluate every N epochs")
    p.add_argument(
        "--recall-ks",
        nargs="+",
        type=int,
        default=None,
        metavar="K",
        help="Recall@K cut-offs, 1 among them (default: the data set's, as the literature "
        "reports them;\na default K above the neighbours a query has is left out)",
    )
    p.add_argument("--hp", action="append", help="override a hyper-parameter: LOSS.KEY=VALUE")
    p.add_argument("--device", default=None, help="default: cuda when available")
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument(
        "--quiet", action="store_true", help="print the final table only (no bars, no progress)"
    )
    p.add_argument(
        "--tune",
        action="store_true",
        help="tune every loss first, with the same number of optuna trials on class-disjoint\n"
        "folds of the training classes, then train the best configurations over --seeds\n"
        "(stored in --out/tuning/optuna.db: a killed search resumes)",
    )
    p.add_argument(
        "--trials",
        type=int,
        default=None,
        help=f"--tune: trials per loss (default {tune.DEFAULT_TRIALS})",
    )
    p.add_argument(
        "--folds",
        type=int,
        default=None,
        help=f"--tune: class-disjoint folds (default {tune.DEFAULT_FOLDS})",
    )
    p.add_argument(
        "--tune-iters",
        type=int,
        default=None,
        help=f"--tune: training iterations per fold (default {tune.DEFAULT_TUNE_ITERS})",
    )
    p.add_argument("--out", default=None, help="default: results/<dataset>/")
    return p


def resolve_config(args) -> Dict[str, Any]:
    """The configuration from the defaults, the preset, --quick and the flags, in that
    order; it holds only the settings that apply to the chosen data set and backbone."""
    cfg = dict(DEFAULTS)
    cfg.update(PRESETS[args.preset])
    if args.quick:
        cfg.update(QUICK)
    cfg.update({k: getattr(args, k) for k in DEFAULTS if getattr(args, k) is not None})
    if cfg["augment"] is None:
        cfg["augment"] = DEFAULT_AUGMENT[cfg["dataset"]]
    check_flags_apply(args, cfg)
    for key, (decider, values) in SCOPED_SETTINGS.items():
        if cfg[decider] not in values:
            del cfg[key]
    if "googlenet_transform_input" in cfg:  # recorded as what the trunk gets
        choice = cfg["googlenet_transform_input"]
        cfg["googlenet_transform_input"] = choice == "on" or (
            choice == "auto" and bool(cfg.get("pretrained_weights"))
        )
    per_batch = cfg["classes_per_anchor"] * cfg["samples_per_class"]
    if cfg["batch_size"] % per_batch:
        raise SystemExit(
            f"error: --batch-size {cfg['batch_size']} must be a multiple of m t = {per_batch}"
        )
    if args.eval_every < 1:
        raise SystemExit(f"error: --eval-every must be >= 1, got {args.eval_every}")
    cfg["tune"] = resolve_tuning(args)
    losses = args.losses or list(MAIN_LOSSES)
    if args.ablations:
        losses += [a for a in ABLATIONS if a not in losses]
    if args.choices:
        losses += [a for a in CHOICE_ABLATIONS if a not in losses]
    if args.diagnosis:
        losses += [a for a in DIAGNOSIS_ABLATIONS if a not in losses]
    cfg.update(
        losses=losses,
        seeds=args.seeds,
        preset=args.preset,
        quick=args.quick,
        eval_every=args.eval_every,
        recall_ks=recall_ks.check_requested(args.recall_ks),
        num_workers=args.num_workers,
        hyperparameters=parse_hp(args.hp, losses),
        out=args.out or os.path.join("results", cfg["dataset"]),
    )
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    cfg["device"] = device
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    cfg["world_size"] = world_size
    if world_size > 1 and args.out is None:
        cfg["out"] = os.path.join("results", f"{cfg['dataset']}-{world_size}proc")
    return cfg


def resolve_tuning(args) -> Optional[Dict[str, int]]:
    """--tune's budget, or None; its flags without --tune are an error."""
    flags = {"trials": args.trials, "folds": args.folds, "tune_iters": args.tune_iters}
    if not args.tune:
        given = [f"--{k.replace('_', '-')}" for k, v in flags.items() if v is not None]
        if given:
            raise SystemExit(f"error: {', '.join(given)} applies only with --tune")
        return None
    defaults = {
        "trials": tune.DEFAULT_TRIALS,
        "folds": tune.DEFAULT_FOLDS,
        "tune_iters": tune.DEFAULT_TUNE_ITERS,
    }
    budget = {k: defaults[k] if v is None else v for k, v in flags.items()}
    for key, minimum in (("trials", 1), ("folds", 2), ("tune_iters", 1)):
        if budget[key] < minimum:
            flag = "--" + key.replace("_", "-")
            raise SystemExit(f"error: {flag} must be >= {minimum}, got {budget[key]}")
    return budget


def check_flags_apply(args, cfg: Dict[str, Any]) -> None:
    """A flag for a setting the chosen data set or backbone does not read is an error."""
    for key, (decider, values) in SCOPED_SETTINGS.items():
        if getattr(args, key) is not None and cfg[decider] not in values:
            flag, decider_flag = "--" + key.replace("_", "-"), "--" + decider
            raise SystemExit(
                f"error: {flag} applies only to {decider_flag} {', '.join(values)}, "
                f"not to {decider_flag} {cfg[decider]}"
            )


def check_trunk(args, cfg: Dict[str, Any]) -> None:
    """The trunk's weights, checked before any data are loaded: the file fits the
    backbone, and the paper's protocol does not start from random weights unasked."""
    weights = cfg.get("pretrained_weights")
    if args.allow_random_init and (weights or args.preset != "paper"):
        raise SystemExit(
            "error: --allow-random-init applies only to --preset paper without --pretrained-weights"
        )
    if args.preset == "paper" and not weights and not args.allow_random_init:
        raise SystemExit(f"error: {random_init_problem(cfg['backbone'])}")
    if weights:
        try:
            check_pretrained_weights(cfg["backbone"], weights)
        except WeightsError as e:
            raise SystemExit(f"error: {e}")


def init_distributed(cfg: Dict[str, Any]):
    """Join the process group torchrun describes (WORLD_SIZE > 1): gloo on the CPU,
    nccl on GPUs; each process then takes its share of the CPU threads."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return 0, 1
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cfg["device"].startswith("cuda"):
        cfg["device"] = f"cuda:{local_rank}"
        torch.cuda.set_device(local_rank)
        backend = "nccl"
    else:
        backend = "gloo"
        local_size = int(os.environ.get("LOCAL_WORLD_SIZE", str(size)))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_size))
    torch.distributed.init_process_group(backend)
    return torch.distributed.get_rank(), size


def load_splits(cfg, progress: bool) -> DataSplits:
    train_tf, eval_tf = image_transforms(cfg["dataset"], cfg.get("augment"), cfg.get("image_size"))
    options = dict(data_root=cfg.get("data_root"), train_classes_file=cfg.get("train_classes"))
    if "glyph_samples" in cfg:
        options["glyph_samples_per_class"] = cfg["glyph_samples"]
    try:
        return load_dataset(
            cfg["dataset"],
            train_transform=train_tf,
            eval_transform=eval_tf,
            progress=progress,
            **options,
        )
    except DataError as e:
        raise SystemExit(f"error: {e}")


def check_classes_per_batch(cfg, train_labels) -> None:
    """A batch holds B / t classes (t samples each): the training split must have them."""
    needed = cfg["batch_size"] // cfg["samples_per_class"]
    available = len(np.unique(train_labels))
    if available < needed:
        raise SystemExit(
            f"error: the training split holds {available} classes, but --batch-size "
            f"{cfg['batch_size']} with --samples-per-class {cfg['samples_per_class']} needs "
            f"{needed} classes per batch: lower --batch-size or use a data set with more classes"
        )


def describe_environment(device: torch.device) -> Dict[str, Any]:
    from benchmarks.evaluation.faiss_device import describe_knn

    return {
        "versions": package_versions(),
        "git_commit": git_commit(),
        "device": describe_device(device),
        "knn": describe_knn(device),
        "torch_threads": torch.get_num_threads(),
    }


def finished_run(cfg, loss: str, seed: int) -> Optional[Dict[str, Any]]:
    """The record of a run an earlier call finished with this configuration, or None."""
    path = run_path(cfg["out"], loss, seed)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        done = json.load(f)
    if done.get("config_hash") != config_hash(cfg, loss):
        raise SystemExit(
            f"error: {path} was made with another configuration; use another --out or remove it"
        )
    return done


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    args = build_parser().parse_args(argv)
    cfg = resolve_config(args)
    check_trunk(args, cfg)
    logging.getLogger("PML").setLevel(logging.WARNING)
    rank, world_size = init_distributed(cfg)
    console = Console(quiet=args.quiet, rank=rank)
    with console.others_bars_off():
        runs = run_all(cfg, console, rank, world_size)
    if world_size > 1:
        torch.distributed.destroy_process_group()
    return {"config": cfg, "runs": runs}


def run_all(cfg, console: Console, rank: int, world_size: int) -> List[Dict[str, Any]]:
    """Every (loss, seed) run not finished yet, and the reports after each."""
    from benchmarks.evaluation.accuracy import make_accuracy_calculator

    device = torch.device(cfg["device"])
    splits = load_splits(cfg, console.bars)
    check_classes_per_batch(cfg, splits.train_labels)
    cfg["recall_ks"], ks_notice = recall_ks.choose(splits, cfg["recall_ks"], cfg["dataset"])
    cfg["data"] = splits.description
    if splits.pairs is not None:
        cfg["verification"] = splits.pairs.description
    calculator = make_accuracy_calculator(recall_at_ks=tuple(cfg["recall_ks"]), device=device)
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
    if cfg["tune"] is not None:
        tune_all(cfg, splits, calculator, device, console, world_size)
    runs = []
    for loss, seed in [(loss, seed) for loss in cfg["losses"] for seed in cfg["seeds"]]:
        done = finished_run(cfg, loss, seed)
        if done is not None:
            console.say(f"skip {loss} seed {seed}: already in {run_path(cfg['out'], loss, seed)}")
            runs.append(done)
            continue
        start = time.perf_counter()
        result = run_one(loss, seed, cfg, splits, calculator, device, console=console)
        if rank == 0:
            result["wall_seconds"] = time.perf_counter() - start
            atomic_write(run_path(cfg["out"], loss, seed), json.dumps(result, indent=1))
            runs.append(result)
            console.say(
                f"{loss} seed {seed}: R@1 {100 * result['final']['recall_at_1']:.1f} "
                f"in {result['wall_seconds']:.0f} s"
            )
            write_reports(runs, cfg, environment, LOSS_TITLES, DASHED)
        if world_size > 1:
            torch.distributed.barrier()  # every rank sees the finished run's file
    if rank == 0:
        console.table(write_reports(runs, cfg, environment, LOSS_TITLES, DASHED))
    return runs


def tune_all(cfg, splits: DataSplits, calculator, device, console: Console, world_size: int):
    """--tune: each loss's search (benchmarks/tune.py); the best configurations become
    cfg's hyper-parameters and every trial goes in cfg["tuning"] (results.json) and
    tuning/tuning.json."""
    if world_size > 1:
        raise SystemExit("error: --tune runs in one process (no torchrun)")
    quiet = Console(quiet=True)

    def train_fold(loss: str, trial_cfg, fold: DataSplits) -> Dict[str, float]:
        trial_cfg = {**trial_cfg, "out": os.path.join(cfg["out"], "tuning")}
        record = run_one(loss, tune.TUNE_SEED, trial_cfg, fold, calculator, device, quiet)
        return record["final"]

    records = {}
    start = time.perf_counter()
    for loss in cfg["losses"]:
        records[loss] = tune.tune_loss(loss, cfg, splits, train_fold, console.say)
        best = records[loss]
        console.say(
            f"tune {loss}: best trial {best['best_trial'] + 1}, validation MAP@R "
            f"{100 * best['best_value']:.1f}: {best['best_hyperparameters']}"
        )
    for loss, record in records.items():
        cfg["hyperparameters"][loss] = record["best_hyperparameters"]
    cfg["tuning"] = {
        "budget": cfg["tune"],
        "seconds_this_call": time.perf_counter() - start,
        "studies": records,
    }
    atomic_write(
        os.path.join(cfg["out"], "tuning", "tuning.json"), json.dumps(cfg["tuning"], indent=1)
    )


if __name__ == "__main__":
    main()
