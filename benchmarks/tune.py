"""Equal-budget hyper-parameter search for compare.py --tune.

Every loss gets the same number of optuna trials (TPE, seeded). A trial trains on
k - 1 class-disjoint folds of the *training* classes and is scored on the held-out
fold's classes (mean validation MAP@R over the k folds; R@1 is recorded). The test
classes are never seen. The first trial of every loss is its untuned default.
Optimizer, learning rate, trunk, embedding size and iterations are the same for
every loss and trial.

Studies live in an optuna SQLite storage in --out (tuning/optuna.db): a killed
search resumes where it stopped, the interrupted trial's configuration first.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any, Callable, Dict, List, Mapping

import numpy as np

from benchmarks.config import RunConfig
from benchmarks.data.splits import DataSplits

#: Cheap enough for a 2-core CPU on the glyphs (the measured wall time is in
#: README); the Reality Check's own budget is far larger (README, "Tuning").
DEFAULT_TRIALS = 4
DEFAULT_FOLDS = 2
DEFAULT_TUNE_ITERS = 300
#: The search's own seed: fold assignment, optuna's sampler, the trials' training.
TUNE_SEED = 0


def _uniform(trial, name: str, low: float, high: float) -> float:
    return trial.suggest_float(name, low, high)


def _log(trial, name: str, low: float, high: float) -> float:
    return trial.suggest_float(name, low, high, log=True)


#: Each loss's search space: its loss parameters only (the Reality Check's
#: practice), HTL's also its tree view and its sampler's m and t at the fixed
#: batch size. Squared distances between unit vectors lie in [0, 4].
SEARCH_SPACES: Dict[str, Callable[[Any, RunConfig], Dict[str, Any]]] = {
    "contrastive": lambda t, cfg: {
        "pos_margin": _uniform(t, "pos_margin", 0.0, 1.0),
        "neg_margin": _uniform(t, "neg_margin", 0.0, 2.0),
    },
    "triplet": lambda t, cfg: {"margin": _uniform(t, "margin", 0.0, 2.0)},
    "margin": lambda t, cfg: {
        "margin": _uniform(t, "margin", 0.0, 1.0),
        "beta": _uniform(t, "beta", 0.0, 2.0),
        "beta_lr": _log(t, "beta_lr", 1e-4, 1e-1),
    },
    "multi_similarity": lambda t, cfg: {
        "alpha": _log(t, "alpha", 0.01, 100.0),
        "beta": _log(t, "beta", 0.01, 100.0),
        "base": _uniform(t, "base", 0.0, 1.0),
        "epsilon": _uniform(t, "epsilon", 0.0, 1.0),
    },
    "htl": lambda t, cfg: {
        "beta": _uniform(t, "beta", 0.0, 1.0),
        "margin_scale": _uniform(t, "margin_scale", 0.0, 1.0),
        "tree_view": t.suggest_categorical("tree_view", htl_tree_views(cfg)),
        **htl_sampler_space(t, cfg),
    },
}


def htl_tree_views(cfg: RunConfig) -> List[str]:
    """Without augmentation the augmented view is the clean one: left out."""
    if cfg.augment == "none":
        return ["clean", "training"]
    return ["clean", "augmented", "training"]


def htl_sampler_space(trial, cfg: RunConfig) -> Dict[str, int]:
    """m and t among 2, 4, 8 with m t dividing the batch size (B fixed)."""
    B = cfg.batch_size
    pairs = [f"{m}x{t}" for m in (2, 4, 8) for t in (2, 4, 8) if B % (m * t) == 0]
    m, t = (int(v) for v in trial.suggest_categorical("m_x_t", pairs).split("x"))
    return {"classes_per_anchor": m, "samples_per_class": t}


def default_params(loss: str, hp: Dict[str, Any], cfg: RunConfig) -> Dict[str, Any]:
    """The untuned configuration in the search space's parameter names."""
    params = {k: v for k, v in hp.items() if k in SEARCH_PARAMETER_NAMES[loss]}
    if loss == "htl":
        params.setdefault("margin_scale", 1.0)
        params["tree_view"] = "clean"
        params["m_x_t"] = f"{cfg.classes_per_anchor}x{cfg.samples_per_class}"
    return params


SEARCH_PARAMETER_NAMES = {
    "contrastive": ("pos_margin", "neg_margin"),
    "triplet": ("margin",),
    "margin": ("margin", "beta", "beta_lr"),
    "multi_similarity": ("alpha", "beta", "base", "epsilon"),
    "htl": ("beta", "margin_scale", "tree_view", "m_x_t"),
}


# --------------------------------------------------------------------------- folds
def class_folds(labels: np.ndarray, k: int, seed: int = TUNE_SEED) -> List[np.ndarray]:
    """The training classes shuffled and cut into k class-disjoint folds."""
    classes = np.unique(labels)
    if not 2 <= k <= len(classes):
        raise ValueError(f"--folds must lie in [2, {len(classes)}] (the classes), got {k}")
    order = np.random.default_rng(seed).permutation(classes)
    return [np.sort(fold) for fold in np.array_split(order, k)]


def fold_splits(splits: DataSplits, held_out: np.ndarray) -> DataSplits:
    """Train on the training samples of every class but ``held_out``; validate on the
    clean views of ``held_out``'s samples (each query against the others)."""
    from torch.utils.data import Subset

    labels = splits.train_labels
    validate = np.isin(labels, held_out)
    train_idx, val_idx = np.flatnonzero(~validate), np.flatnonzero(validate)
    validation = Subset(splits.train_eval, val_idx.tolist())
    return DataSplits(
        train=Subset(splits.train, train_idx.tolist()),
        train_eval=Subset(splits.train_eval, train_idx.tolist()),
        query=validation,
        reference=validation,
        train_labels=labels[train_idx],
        query_is_reference=True,
        recall_ks=splits.recall_ks,
        channels=splits.channels,
        description=f"{len(np.unique(labels[train_idx]))} training classes, "
        f"{len(held_out)} held out",
        feature_size=splits.feature_size,
    )


# --------------------------------------------------------------------------- studies
def tuning_hash(record: Mapping[str, Any], loss: str) -> str:
    """What a stored study must have been made with to be continued (the trial count
    is not in it: a larger --trials extends a study): a hash of the record (a
    RunConfig, or results.json's "configuration" before tuning)."""
    keep = {
        k: v
        for k, v in record.items()
        if k not in ("losses", "seeds", "out", "num_workers", "quick", "hyperparameters", "tune")
    }
    keep["tune"] = {k: v for k, v in record["tune"].items() if k != "trials"}
    keep["loss"] = loss
    keep["defaults"] = record["hyperparameters"][loss]
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:12]


def storage_url(out: str) -> str:
    folder = os.path.join(out, "tuning")
    os.makedirs(folder, exist_ok=True)
    return "sqlite:///" + os.path.abspath(os.path.join(folder, "optuna.db"))


def open_study(cfg: RunConfig, loss: str) -> Any:
    """The loss's stored study (created if new). A trial a killed run left running is
    marked failed and its configuration queued again."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own line per trial
    name = f"{loss}-{tuning_hash(cfg, loss)}"
    study = optuna.create_study(
        storage=storage_url(cfg.out), study_name=name, direction="maximize", load_if_exists=True
    )
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs={"resumed_from": trial.number})
    if not study.trials:
        hp = cfg.hyperparameters[loss]
        study.enqueue_trial(default_params(loss, hp, cfg), user_attrs={"untuned_default": True})
    # seeded by the number of trials so far: a resumed search draws on
    study.sampler = optuna.samplers.TPESampler(seed=TUNE_SEED + len(study.trials))
    return study


def complete_trials(study) -> list:
    import optuna

    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


def hyperparameters_of(loss: str, params: Dict[str, Any], cfg: RunConfig) -> Dict[str, Any]:
    """compare.py's hyper-parameters from a trial's parameters."""
    import optuna

    trial = optuna.trial.FixedTrial(params)
    return SEARCH_SPACES[loss](trial, cfg)


def trial_config(cfg: RunConfig, loss: str, hp: Dict[str, Any]) -> RunConfig:
    """A training run of one fold: tune_iters iterations, evaluated at the end only,
    no CSV/TensorBoard logs, no warm start."""
    iters = cfg.tune["tune_iters"]
    per_epoch = min(cfg.iters_per_epoch, iters)
    epochs = max(1, iters // per_epoch)
    return cfg.replace(
        epochs=epochs,
        iters_per_epoch=per_epoch,
        eval_every=epochs,
        evaluate_start=False,
        hyperparameters={**cfg.hyperparameters, loss: hp},
        logs=False,
        warm_start=None,
    )


def tune_loss(
    loss: str,
    cfg: RunConfig,
    splits: DataSplits,
    train_fold: Callable[[str, RunConfig, DataSplits], Dict[str, float]],
    say: Callable[[str], None],
) -> Dict[str, Any]:
    """Run the loss's remaining trials; return its study's record.

    ``train_fold(loss, trial_cfg, fold_splits)`` trains one fold (seed TUNE_SEED) and
    returns the validation metrics; ``say`` prints one line per trial.
    """
    if loss not in SEARCH_SPACES:
        raise SystemExit(f"error: --tune has no search space for {loss!r}: {sorted(SEARCH_SPACES)}")
    tune = cfg.tune
    folds = class_folds(splits.train_labels, tune["folds"])
    study = open_study(cfg, loss)
    remaining = tune["trials"] - len(complete_trials(study))

    def objective(trial) -> float:
        hp = {**cfg.hyperparameters[loss], **SEARCH_SPACES[loss](trial, cfg)}
        check_sampler_fits(loss, hp, cfg, splits.train_labels, folds)
        start = time.perf_counter()
        per_fold = []
        for i, held_out in enumerate(folds):
            metrics = train_fold(loss, trial_config(cfg, loss, hp), fold_splits(splits, held_out))
            per_fold.append(
                {
                    "fold": i,
                    "mean_average_precision_at_r": metrics["mean_average_precision_at_r"],
                    "recall_at_1": metrics["recall_at_1"],
                }
            )
        value = float(np.mean([f["mean_average_precision_at_r"] for f in per_fold]))
        trial.set_user_attr("folds", per_fold)
        trial.set_user_attr("recall_at_1", float(np.mean([f["recall_at_1"] for f in per_fold])))
        trial.set_user_attr("seconds", time.perf_counter() - start)
        say(
            f"tune {loss} trial {trial.number + 1}/{tune['trials']}: validation MAP@R "
            f"{100 * value:.1f}, R@1 {100 * trial.user_attrs['recall_at_1']:.1f} "
            f"({', '.join(f'{k}={_short(v)}' for k, v in trial.params.items())})"
        )
        return value

    if remaining > 0:
        study.optimize(objective, n_trials=remaining, catch=())
    return study_record(loss, study, cfg)


def check_sampler_fits(
    loss: str,
    hp: Dict[str, Any],
    cfg: RunConfig,
    train_labels: np.ndarray,
    folds: List[np.ndarray],
) -> None:
    """A batch of B / t classes must fit in every fold's training classes."""
    t = hp.get("samples_per_class", cfg.samples_per_class)
    needed = cfg.batch_size // t
    smallest = len(np.unique(train_labels)) - max(len(f) for f in folds)
    if needed > smallest:
        raise SystemExit(
            f"error: --tune: {loss} with t = {t} needs {needed} classes per batch, but a fold "
            f"trains on {smallest}: use fewer --folds or a smaller --batch-size"
        )


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def study_record(loss: str, study, cfg: RunConfig) -> Dict[str, Any]:
    """Every trial (configuration, score, folds, state) and the best one."""
    done = complete_trials(study)
    if not done:
        raise SystemExit(f"error: --tune: no trial of {loss} finished")
    best = max(done, key=lambda t: (t.value, -t.number))  # ties: the earliest
    return {
        "loss": loss,
        "study": study.study_name,
        "objective": "mean validation MAP@R over the folds",
        "best_trial": best.number,
        "best_value": best.value,
        "best_params": best.params,
        "best_hyperparameters": {
            **cfg.hyperparameters[loss],
            **hyperparameters_of(loss, best.params, cfg),
        },
        "trials": [
            {
                "number": t.number,
                "state": t.state.name,
                "params": t.params,
                "value": t.value,
                "recall_at_1": t.user_attrs.get("recall_at_1"),
                "folds": t.user_attrs.get("folds"),
                "seconds": t.user_attrs.get("seconds"),
                "untuned_default": bool(t.user_attrs.get("untuned_default")),
            }
            for t in study.trials
        ],
    }
