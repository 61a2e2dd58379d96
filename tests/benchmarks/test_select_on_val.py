"""--select-on-val: the held-out classes are training classes, disjoint from the
classes trained on and from the test classes; the checkpoint is the validation
best, and the test classes choose nothing."""

import numpy as np
import pytest
from helpers import write_folder_dataset

from benchmarks import cli, runner
from benchmarks.config import RunConfig
from benchmarks.data import DataError
from benchmarks.data.validation import VALIDATION_SEED, hold_out, validation_classes
from benchmarks.evaluation.selection import best_iteration, selected_checkpoint


@pytest.fixture(scope="module")
def folder_root(tmp_path_factory):
    return write_folder_dataset(tmp_path_factory.mktemp("folder_data"), 20, 3)


def test_the_validation_classes_are_disjoint_from_training_and_test(folder_root):
    cfg = RunConfig(dataset="folder", data_root=folder_root, image_size=16)
    splits = runner.load_splits(cfg, progress=False)
    held_out = validation_classes(splits.train_labels, 0.2)
    assert len(held_out) == 2 and set(held_out) <= set(splits.train_labels)
    part = hold_out(splits, held_out)
    trained = set(part.train_labels) | {label for _, label in part.train_eval}
    validated = {label for _, label in part.validation}
    tested = set(splits.query.labels)
    assert validated == set(held_out)
    assert not validated & trained and not validated & tested and not trained & tested
    assert trained | validated == set(splits.train_labels)
    assert len(part.validation) == 2 * 3 and len(part.train) == len(splits.train) - 6
    assert part.query is splits.query  # the test split is untouched
    # drawn by a fixed seed, not by the training seed
    again = validation_classes(np.random.default_rng(5).permutation(splits.train_labels), 0.2)
    assert np.array_equal(held_out, again)
    order = np.random.default_rng(VALIDATION_SEED).permutation(np.unique(splits.train_labels))
    assert np.array_equal(held_out, np.sort(order[:2]))


def test_too_few_classes_to_hold_out_is_a_data_error():
    with pytest.raises(DataError, match="--val-classes 0.01 holds out 0 of the 10"):
        validation_classes(np.repeat(np.arange(10), 2), 0.01)


def curve(values, key="mean_average_precision_at_r"):
    return [
        {"epoch": i, "iteration": 10 * i, key: v, "recall_at_1": v} for i, v in enumerate(values)
    ]


def test_the_checkpoint_is_the_validation_best_and_the_earlier_of_ties():
    validation = curve([0.2, 0.5, 0.4, 0.5])
    test = curve([0.9, 0.1, 0.8, 0.3])  # the test's best is elsewhere: it chooses nothing
    chosen = selected_checkpoint(validation, test)
    assert chosen["iteration"] == 10 == best_iteration(validation)
    assert chosen["test"]["recall_at_1"] == 0.1 and chosen["validation"]["recall_at_1"] == 0.5
    for shuffled in ([0.0, 0.0, 0.0, 0.0], [1.0, 0.9, 0.8, 0.7]):
        assert selected_checkpoint(validation, curve(shuffled))["iteration"] == 10


def test_val_classes_flags():
    def config_of(*argv):
        return cli.resolve_config(cli.build_parser().parse_args(list(argv)))

    cfg = config_of("--select-on-val")
    assert cfg.val_classes == 0.2 and cfg["select_on_val"] is True
    assert config_of("--select-on-val", "--val-classes", "0.3").val_classes == 0.3
    assert "select_on_val" not in config_of() and "val_classes" not in config_of()
    with pytest.raises(SystemExit, match="^error: --val-classes applies only with --select-on"):
        config_of("--val-classes", "0.3")
    with pytest.raises(SystemExit, match=r"^error: --val-classes must lie in \(0, 1\)"):
        config_of("--select-on-val", "--val-classes", "1.5")
