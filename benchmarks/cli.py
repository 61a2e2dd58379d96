"""The command line of benchmarks/compare.py: its flags, and the RunConfig they make.

Every check that needs no data runs here, before anything is loaded: flags that do
not apply to the chosen data set or backbone, the batch's shape, --tune's budget,
--hp's overrides, the trunk's weights file. Each failure is one ``error: ...``
line.
"""

from __future__ import annotations

import argparse
import copy
import os
from dataclasses import fields
from typing import Any, Dict, List, Optional

import torch

from benchmarks import tune
from benchmarks.config import (
    PRESET_WARM_START,
    PRESETS,
    QUICK,
    SCOPED_SETTINGS,
    RunConfig,
    TuneBudget,
    run_options,
)
from benchmarks.data import AUGMENTATIONS, DATASETS, default_augment, settings_read_by_dataset
from benchmarks.data.validation import DEFAULT_FRACTION
from benchmarks.evaluation import recall_ks
from benchmarks.models import (
    BACKBONES,
    EMBEDDERS,
    LITE_BACKBONES,
    SMALL_IMAGE_SIZE,
    WeightsError,
    check_pretrained_weights,
    missing_extra,
    random_init_problem,
    settings_read_by_backbone,
)
from benchmarks.models.efficientnet_lite import weights_file
from benchmarks.variants import (
    ABLATIONS,
    CHOICE_ABLATIONS,
    DIAGNOSIS_ABLATIONS,
    HYPERPARAMETERS,
    MAIN_LOSSES,
    SAMPLER_CHOICES,
    build_loss,
)

#: The settings a flag of the same name sets (besides the preset's and --quick's).
FLAG_SETTINGS = (
    "dataset",
    "backbone",
    "embedding_size",
    "batch_size",
    "classes_per_anchor",
    "samples_per_class",
    "epochs",
    "iters_per_epoch",
    "lr",
    "weight_decay",
    "optimizer",
    "image_size",
    "glyph_samples",
    "data_root",
    "train_classes",
    "pretrained_weights",
    "googlenet_transform_input",
    "augment",
    "freeze_trunk",
    "embedder",
    "feature_views",
    "warm_start",
    "select_on_val",
    "val_classes",
    "sampler",
)


class UsageError(SystemExit):
    """A command line that cannot run, found at start-up: the entry point prints
    ``str(error)`` (one ``error: ...`` line) and exits with status 2, as argparse does."""

    def __init__(self, message: str):
        super().__init__(2)
        self.message = message

    def __str__(self) -> str:
        return self.message


# --------------------------------------------------------------------------- flags
def build_parser(description: Optional[str] = None) -> argparse.ArgumentParser:
    """compare.py's flags; ``description``: the --help text above them."""
    p = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawTextHelpFormatter
    )
    _add_what_to_run(p)
    _add_model_and_training(p)
    _add_regime(p)
    _add_evaluation_and_run(p)
    _add_tuning(p)
    p.add_argument("--out", default=None, help="default: results/<dataset>/")
    return p


def _add_what_to_run(p: argparse.ArgumentParser) -> None:
    """The data set, the losses and the seeds."""
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


def _add_model_and_training(p: argparse.ArgumentParser) -> None:
    """The settings of the model and its training."""
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


def _add_regime(p: argparse.ArgumentParser) -> None:
    """The regime's options: the trunk frozen, the warm start, the checkpoint chosen
    on held-out training classes, the batch sampler of every loss."""
    p.add_argument(
        "--freeze-trunk",
        action="store_true",
        default=None,
        help="embed every image once with the trunk in eval mode (cached on disk) and\n"
        "train the embedder alone on the features",
    )
    p.add_argument(
        "--embedder",
        choices=EMBEDDERS,
        default=None,
        help="linear, or mlp (Linear(d, 512), ReLU, Linear(512, embedding size));\n"
        "default: mlp with --freeze-trunk, else linear",
    )
    p.add_argument(
        "--feature-views",
        type=int,
        default=None,
        metavar="K",
        help="--freeze-trunk: K augmented views (--augment) of every training image,\n"
        "embedded once and cached; each draw takes one at random (default 0: the clean view)",
    )
    p.add_argument(
        "--warm-start",
        type=int,
        default=None,
        metavar="ITERS",
        help="every loss starts with ITERS iterations of the plain triplet loss on\n"
        "MPerClassSampler batches (the paper's initialisation), within the same budget",
    )
    p.add_argument(
        "--select-on-val",
        action="store_true",
        default=None,
        help="hold out a class-disjoint part of the training classes; report the test\n"
        "accuracy at the checkpoint with the best validation MAP@R beside the final one",
    )
    p.add_argument(
        "--val-classes",
        type=float,
        default=None,
        metavar="FRACTION",
        help=f"--select-on-val: the share of the training classes held out "
        f"(default {DEFAULT_FRACTION})",
    )
    p.add_argument(
        "--sampler",
        choices=list(SAMPLER_CHOICES),
        default=None,
        help="every loss's batch sampler: default (each loss's own), mperclass or\n"
        "anchor-neighbor (the tree is then rebuilt every epoch for the sampler)",
    )


def _add_evaluation_and_run(p: argparse.ArgumentParser) -> None:
    """Evaluation, hyper-parameters, device and output."""
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


def _add_tuning(p: argparse.ArgumentParser) -> None:
    """--tune and its budget."""
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


# --------------------------------------------------------------------------- the RunConfig
def settings_from_flags(args: argparse.Namespace) -> Dict[str, Any]:
    """The model and training settings from RunConfig's defaults, the preset, --quick
    and the flags, in that order."""
    settings = {f.name: f.default for f in fields(RunConfig) if f.name in FLAG_SETTINGS}
    settings.update(PRESETS[args.preset])
    if args.quick:
        settings.update(QUICK)
    settings.update({k: getattr(args, k) for k in FLAG_SETTINGS if getattr(args, k) is not None})
    if args.image_size is None and "image_size" not in PRESETS[args.preset]:
        settings["image_size"] = _size_for_trunk(settings)
    if args.embedder is None:
        settings["embedder"] = "mlp" if settings["freeze_trunk"] else "linear"
    if args.warm_start is None and args.preset in PRESET_WARM_START:
        share, whole = PRESET_WARM_START[args.preset]
        budget = settings["epochs"] * settings["iters_per_epoch"]
        settings["warm_start"] = budget * share // whole or None
    if args.val_classes is None and settings["select_on_val"]:
        settings["val_classes"] = DEFAULT_FRACTION
    return settings


def _size_for_trunk(settings: Dict[str, Any]) -> Optional[int]:
    """The default --image-size: SMALL_IMAGE_SIZE for small images (glyphs,
    Fashion-MNIST) on a trunk that needs them resized (the data set does not read
    --image-size, the backbone does); else RunConfig's."""
    resized = "image_size" not in settings_read_by_dataset(
        settings["dataset"]
    ) and "image_size" in settings_read_by_backbone(settings["backbone"])
    return SMALL_IMAGE_SIZE if resized else settings["image_size"]


def resolve_config(args: argparse.Namespace) -> RunConfig:
    """The run's configuration; a setting the chosen data set and backbone do not
    read is None in it (and absent from its record)."""
    settings = settings_from_flags(args)
    check_flags_apply(args, settings)
    weights = settings["pretrained_weights"]
    choice = settings.pop("googlenet_transform_input") or "auto"
    transform_input = choice == "on" or (choice == "auto" and bool(weights))
    per_batch = settings["classes_per_anchor"] * settings["samples_per_class"]
    if settings["batch_size"] % per_batch:
        raise SystemExit(
            f"error: --batch-size {settings['batch_size']} must be a multiple of m t = {per_batch}"
        )
    if args.eval_every < 1:
        raise SystemExit(f"error: --eval-every must be >= 1, got {args.eval_every}")
    check_regime(settings)
    budget = resolve_tuning(args)
    losses = losses_to_run(args)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    out = args.out or os.path.join("results", settings["dataset"])
    if world_size > 1 and args.out is None:
        out = os.path.join("results", f"{settings['dataset']}-{world_size}proc")
    cfg = RunConfig(
        **settings,
        googlenet_transform_input=transform_input,
        tune=budget,
        losses=losses,
        seeds=args.seeds,
        preset=args.preset,
        quick=args.quick,
        eval_every=args.eval_every,
        recall_ks=recall_ks.check_requested(args.recall_ks),
        num_workers=args.num_workers,
        hyperparameters=parse_hp(args.hp, losses),
        out=out,
        device=args.device or ("cuda" if torch.cuda.is_available() else "cpu"),
        world_size=world_size,
    )
    check_warm_starts(cfg)
    return cfg


def losses_to_run(args: argparse.Namespace) -> List[str]:
    """--losses (default: the main five), then the rows --ablations, --choices and
    --diagnosis add."""
    losses = args.losses or list(MAIN_LOSSES)
    if args.ablations:
        losses += [a for a in ABLATIONS if a not in losses]
    if args.choices:
        losses += [a for a in CHOICE_ABLATIONS if a not in losses]
    if args.diagnosis:
        losses += [a for a in DIAGNOSIS_ABLATIONS if a not in losses]
    return losses


def resolve_tuning(args: argparse.Namespace) -> Optional[TuneBudget]:
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


def parse_hp(items: Optional[List[str]], losses: List[str]) -> Dict[str, Dict[str, Any]]:
    """The hyper-parameters of ``losses``: the variants' defaults with --hp's overrides."""
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


# --------------------------------------------------------------------------- start-up checks
def check_flags_apply(args: argparse.Namespace, settings: Dict[str, Any]) -> None:
    """A flag for a setting the chosen data set or backbone does not read is an error."""
    for key, scope in SCOPED_SETTINGS.items():
        if getattr(args, key) is None or any(settings[d] in values for d, values in scope):
            continue
        flag = "--" + key.replace("_", "-")
        where = " or ".join(f"--{d} {', '.join(values)}" for d, values in scope)
        chosen = " with ".join(f"--{d} {settings[d]}" for d, _ in scope)
        raise SystemExit(f"error: {flag} applies only to {where}, not to {chosen}")


def check_regime(settings: Dict[str, Any]) -> None:
    """--feature-views, --warm-start and --val-classes: values that can run."""
    views = settings["feature_views"]
    if views < 0:
        raise SystemExit(f"error: --feature-views must be >= 0, got {views}")
    if views and not settings["freeze_trunk"]:
        raise SystemExit("error: --feature-views applies only with --freeze-trunk")
    if views and (settings["augment"] or default_augment(settings["dataset"])) == "none":
        raise SystemExit(
            f"error: --feature-views {views} caches augmented views, but the augmentation is "
            "none: give --augment light or standard, or --feature-views 0"
        )
    budget = settings["epochs"] * settings["iters_per_epoch"]
    warm = settings["warm_start"]
    if warm is not None and not 1 <= warm < budget:
        raise SystemExit(
            f"error: --warm-start {warm} must lie in [1, {budget - 1}], below the budget of "
            f"{budget} iterations (--epochs x --iters-per-epoch)"
        )
    fraction = settings["val_classes"]
    if fraction is not None and not settings["select_on_val"]:
        raise SystemExit("error: --val-classes applies only with --select-on-val")
    if fraction is not None and not 0 < fraction < 1:
        raise SystemExit(f"error: --val-classes must lie in (0, 1), got {fraction}")


def check_warm_starts(cfg: RunConfig) -> None:
    """Each loss's warm start (htl_warm's own without --warm-start) below the budget."""
    budget = cfg.epochs * cfg.iters_per_epoch
    for loss in cfg.losses:
        warm = run_options(loss, cfg)["warm_start"]
        if warm is not None and warm >= budget:
            raise SystemExit(
                f"error: {loss} warms up for {warm} iterations (its own warm start), not below "
                f"the budget of {budget} (--epochs x --iters-per-epoch): give --warm-start "
                f"ITERS below {budget}, or a longer budget"
            )


def check_trunk(args: argparse.Namespace, cfg: RunConfig) -> None:
    """The trunk's weights, checked before any data are loaded: the file fits the
    backbone, the paper's protocol does not start from random weights unasked, and
    the EfficientNet-Lite trunks' packages (the ``pretrained`` extra) are there."""
    if cfg.backbone in LITE_BACKBONES:
        problem = missing_extra(cfg.backbone)
        if problem:
            raise UsageError(f"error: {problem}")
        try:
            weights_file(cfg.backbone)
        except WeightsError as e:
            raise UsageError(f"error: {e}")
    weights = cfg.pretrained_weights or cfg.backbone in LITE_BACKBONES
    if args.allow_random_init and (weights or args.preset != "paper"):
        raise SystemExit(
            "error: --allow-random-init applies only to --preset paper without --pretrained-weights"
        )
    if args.preset == "paper" and not weights and not args.allow_random_init:
        raise SystemExit(f"error: {random_init_problem(cfg.backbone)}")
    if cfg.pretrained_weights:
        try:
            check_pretrained_weights(cfg.backbone, cfg.pretrained_weights)
        except WeightsError as e:
            raise SystemExit(f"error: {e}")


def check_losses_build(cfg: RunConfig, hp_items: Optional[List[str]] = None) -> None:
    """Build each loss (and its miner) once with its hyper-parameters, so that a
    value the loss refuses (``--hp htl.beta=5``) stops the run before any data are
    loaded, not when that loss's turn comes."""
    for loss in cfg.losses:
        try:
            build_loss(loss, cfg.hyperparameters[loss], collect_stats=False)
        except (TypeError, ValueError) as e:
            given = [item for item in hp_items or [] if item.split(".", 1)[0] == loss]
            flags = f"--hp {' '.join(given)}" if given else f"{loss}'s hyper-parameters"
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise UsageError(f"error: {flags}: {loss} refuses them: {reason}")
