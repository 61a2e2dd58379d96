"""compare.py --tune (benchmarks/tune.py): class-disjoint folds of the training classes,
equal trials per loss, the best configuration retrained, and a killed search resumed."""

import json

import numpy as np
import optuna
import pytest
import torch
from helpers import write_folder_dataset

from benchmarks import compare, runner, tune, variants
from benchmarks.config import RunConfig
from benchmarks.data import DataSplits


class LabelledRange(torch.utils.data.Dataset):
    """Item i is (i, labels[i]): which samples a subset holds is visible."""

    def __init__(self, labels):
        self.labels = np.asarray(labels)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return i, int(self.labels[i])


def splits_of(labels) -> DataSplits:
    data = LabelledRange(labels)
    return DataSplits(data, data, data, data, np.asarray(labels), True, (1,), 1, "test")


def test_class_folds_partition_the_training_classes():
    labels = np.repeat(np.arange(10, 23), 3)
    folds = tune.class_folds(labels, 3)
    assert len(folds) == 3
    union = np.concatenate(folds)
    assert sorted(union.tolist()) == list(range(10, 23))  # every class once
    assert all(abs(len(f) - 13 / 3) < 1 for f in folds)
    again = tune.class_folds(labels, 3)
    assert all((a == b).all() for a, b in zip(folds, again))  # seeded
    with pytest.raises(ValueError, match="--folds"):
        tune.class_folds(labels, 1)
    with pytest.raises(ValueError, match="--folds"):
        tune.class_folds(labels, 14)


def test_fold_splits_train_and_validate_on_disjoint_classes():
    labels = np.repeat(np.arange(8), 4)
    splits = splits_of(labels)
    held_out = np.array([1, 5, 6])
    fold = tune.fold_splits(splits, held_out)
    train_items = [fold.train[i][0] for i in range(len(fold.train))]
    val_items = [fold.query[i][0] for i in range(len(fold.query))]
    assert set(labels[train_items]) == {0, 2, 3, 4, 7}
    assert set(labels[val_items]) == {1, 5, 6}
    assert sorted(train_items + val_items) == list(range(len(labels)))
    assert fold.query is fold.reference and fold.query_is_reference
    assert fold.query.dataset is splits.train_eval  # clean views of training samples only
    assert (fold.train_labels == labels[train_items]).all()


def budget(trials=3, folds=2, iters=5):
    return {"trials": trials, "folds": folds, "tune_iters": iters}


def tuning_cfg(out, losses=("triplet",)):
    return RunConfig(
        dataset="glyphs",
        augment="none",
        batch_size=8,
        classes_per_anchor=2,
        samples_per_class=2,
        iters_per_epoch=100,
        epochs=10,
        losses=list(losses),
        seeds=[0],
        out=str(out),
        hyperparameters={loss: dict(variants.HYPERPARAMETERS[loss]) for loss in losses},
        tune=budget(),
    )


def scored_by_margin(calls):
    """A stand-in for training: validation MAP@R peaks at margin 0.5."""

    def train_fold(loss, trial_cfg, fold):
        margin = trial_cfg["hyperparameters"][loss]["margin"]
        calls.append((margin, trial_cfg["epochs"] * trial_cfg["iters_per_epoch"], fold))
        score = 1 - abs(margin - 0.5)
        return {"mean_average_precision_at_r": score, "recall_at_1": score}

    return train_fold


def test_equal_trials_default_first_and_best_kept(tmp_path):
    cfg = tuning_cfg(tmp_path)
    splits = splits_of(np.repeat(np.arange(12), 4))
    calls = []
    record = tune.tune_loss("triplet", cfg, splits, scored_by_margin(calls), lambda line: None)
    assert len(record["trials"]) == 3 and len(calls) == 3 * 2  # trials x folds
    assert record["trials"][0]["untuned_default"]
    assert record["trials"][0]["params"] == {
        "margin": variants.HYPERPARAMETERS["triplet"]["margin"]
    }
    assert {c[1] for c in calls} == {5}  # tune_iters iterations per fold
    values = [t["value"] for t in record["trials"]]
    margins = [t["params"]["margin"] for t in record["trials"]]
    best = int(np.argmax(values))
    assert record["best_trial"] == best
    assert record["best_hyperparameters"] == {"margin": margins[best]}
    assert values[best] == pytest.approx(1 - abs(margins[best] - 0.5))


def test_a_killed_search_resumes_with_the_interrupted_configuration(tmp_path):
    cfg = tuning_cfg(tmp_path)
    splits = splits_of(np.repeat(np.arange(12), 4))
    calls = []
    tune.tune_loss(
        "triplet", cfg.replace(tune=budget(trials=1)), splits, scored_by_margin(calls), print
    )
    # a kill in the middle of the second trial leaves it RUNNING in the storage
    study = tune.open_study(cfg, "triplet")
    killed = study.ask({"margin": optuna.distributions.FloatDistribution(0.0, 2.0)})
    killed_margin = killed.params["margin"]
    assert study.trials[-1].state == optuna.trial.TrialState.RUNNING

    calls.clear()
    record = tune.tune_loss("triplet", cfg, splits, scored_by_margin(calls), print)
    states = [t["state"] for t in record["trials"]]
    assert states.count("COMPLETE") == 3 and states.count("FAIL") == 1
    assert len(calls) == 2 * 2  # only the two missing trials ran
    assert calls[0][0] == killed_margin  # the interrupted configuration first
    # finished: a further call trains nothing and gives the same best
    calls.clear()
    again = tune.tune_loss("triplet", cfg, splits, scored_by_margin(calls), print)
    assert calls == [] and again["best_trial"] == record["best_trial"]


def test_a_changed_budget_other_than_trials_starts_a_new_study(tmp_path):
    cfg = tuning_cfg(tmp_path)
    assert tune.tuning_hash(cfg, "triplet") == tune.tuning_hash(
        {**cfg, "tune": budget(trials=9)}, "triplet"
    )
    assert tune.tuning_hash(cfg, "triplet") != tune.tuning_hash(
        {**cfg, "tune": budget(iters=6)}, "triplet"
    )
    assert tune.tuning_hash(cfg, "triplet") != tune.tuning_hash(
        {**cfg, "augment": "light"}, "triplet"
    )


def test_htl_search_space_keeps_m_t_within_the_batch():
    cfg = RunConfig(batch_size=8, augment="none")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        trial = study.ask()
        hp = tune.SEARCH_SPACES["htl"](trial, cfg)
        m, t = hp["classes_per_anchor"], hp["samples_per_class"]
        assert 8 % (m * t) == 0
        assert 0 <= hp["beta"] <= 1 and 0 <= hp["margin_scale"] <= 1
        assert hp["tree_view"] in ("clean", "training")  # no augmentation: no augmented view
        study.tell(trial, 0.0)
    views = tune.htl_tree_views(RunConfig(augment="light"))
    assert views == ["clean", "augmented", "training"]


# ----------------------------------------------------------- a real tiny run
@pytest.fixture(scope="module")
def folder16(tmp_path_factory):
    """16 classes of 16 x 16 images: the first 8 (sorted names) train, the rest test."""
    return write_folder_dataset(tmp_path_factory.mktemp("folder16"), 16, 5)


def tiny_args(root, out, *extra):
    return [
        "--dataset", "folder", "--data-root", root, "--out", str(out),
        "--losses", "triplet", "htl", "--seeds", "0",
        "--epochs", "1", "--iters-per-epoch", "2", "--batch-size", "8",
        "--classes-per-anchor", "2", "--samples-per-class", "2",
        "--embedding-size", "8", "--image-size", "16", "--device", "cpu", "--quiet",
        "--tune", "--trials", "2", "--folds", "2", "--tune-iters", "2", *extra,
    ]  # fmt: skip


def test_tiny_tuning_run_never_touches_test_classes_and_retrains_the_best(
    folder16, tmp_path, monkeypatch
):
    seen = []
    real_run_one = runner.run_one

    def spy(loss, seed, cfg, splits, *args, **kwargs):
        seen.append((loss, cfg, splits))
        return real_run_one(loss, seed, cfg, splits, *args, **kwargs)

    monkeypatch.setattr(runner, "run_one", spy)
    out = tmp_path / "out"
    compare.main(tiny_args(folder16, out))
    results = json.loads((out / "results.json").read_text())
    tuning = results["configuration"]["tuning"]
    trial_runs = [s for s in seen if s[1].get("evaluate_start") is False]
    final_runs = [s for s in seen if s[1].get("evaluate_start") is not False]
    assert len(trial_runs) == 2 * 2 * 2  # losses x trials x folds: the same for every loss
    full = final_runs[0][2]  # the data set's own splits
    train_classes = set(full.train_labels.tolist())
    test_classes = set(full.query[i][1] for i in range(len(full.query)))
    assert not train_classes & test_classes
    for _, _, fold in trial_runs:
        fold_train = set(fold.train_labels.tolist())
        fold_val = set(int(full.train_labels[i]) for i in fold.query.indices)
        assert fold.query.dataset is full.train_eval and fold.train.dataset is full.train
        assert fold_train and fold_val and not fold_train & fold_val
        assert fold_train | fold_val == train_classes  # the held-out fold is validated
    for loss in ("triplet", "htl"):
        study = tuning["studies"][loss]
        assert len([t for t in study["trials"] if t["state"] == "COMPLETE"]) == 2
        best = max(study["trials"], key=lambda t: t["value"])
        assert study["best_trial"] == best["number"]
        assert results["configuration"]["hyperparameters"][loss] == study["best_hyperparameters"]
        (run,) = [r for r in results["runs"] if r["loss"] == loss]
        assert run["hyperparameters"] == study["best_hyperparameters"]
    assert (out / "tuning" / "optuna.db").exists() and (out / "tuning" / "tuning.json").exists()
    assert "## Tuning" in (out / "results.md").read_text()

    # a second call finds every trial and run done: nothing is trained again
    seen.clear()
    compare.main(tiny_args(folder16, out))
    assert seen == []


def test_tuning_flags_need_tune(folder16, tmp_path):
    args = [a for a in tiny_args(folder16, tmp_path) if a != "--tune"]
    with pytest.raises(
        SystemExit, match="--trials, --folds, --tune-iters applies only with --tune"
    ):
        compare.main(args)
    with pytest.raises(SystemExit, match="--folds must be >= 2"):
        compare.main(tiny_args(folder16, tmp_path, "--folds", "1"))
