"""RunConfig: its record is what results.json stores, and its hash is the one the
committed runs under docs/results/ were made with, so a re-run finds them."""

import glob
import json
import os
import shutil

import pytest

from benchmarks import compare, runner, tune, variants
from benchmarks.config import RunConfig, config_hash

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULTS = sorted(glob.glob(os.path.join(ROOT, "docs", "results", "*", "results.json")))


def folder_name(path):
    return os.path.basename(os.path.dirname(path))


def committed(path):
    """(the stored configuration, every run file of the folder)."""
    with open(path) as f:
        record = json.load(f)["configuration"]
    runs = []
    for run_path in sorted(glob.glob(os.path.join(os.path.dirname(path), "runs", "*.json"))):
        with open(run_path) as f:
            runs.append(json.load(f))
    return record, runs


def test_the_committed_result_folders_are_found():
    assert len(RESULTS) >= 5


@pytest.mark.parametrize("path", RESULTS, ids=folder_name)
def test_a_committed_configuration_reads_back_as_it_was_recorded(path):
    record, _ = committed(path)
    cfg = RunConfig.from_record(record)
    assert cfg.record() == record
    assert list(cfg.record()) == list(record)  # the same order in results.json
    assert dict(cfg) == record


@pytest.mark.parametrize("path", RESULTS, ids=folder_name)
def test_every_committed_run_has_the_hash_of_its_configuration(path):
    record, runs = committed(path)
    cfg = RunConfig.from_record(record)
    assert runs
    for run in runs:
        # a run file of a loss the final report left out keeps its own hyper-parameters
        hyperparameters = {**cfg.hyperparameters, run["loss"]: run["hyperparameters"]}
        assert run["hyperparameters"] == cfg.hyperparameters.get(
            run["loss"], run["hyperparameters"]
        )
        with_run = cfg.replace(hyperparameters=hyperparameters)
        assert config_hash(with_run, run["loss"]) == run["config_hash"], run["loss"]
        assert config_hash(with_run.record(), run["loss"]) == run["config_hash"]


def test_the_committed_tuning_studies_keep_their_names():
    path = os.path.join(ROOT, "docs", "results", "glyphs-tuned")
    with open(os.path.join(path, "results.json")) as f:
        record = json.load(f)["configuration"]
    with open(os.path.join(path, "tuning", "tuning.json")) as f:
        studies = json.load(f)["studies"]
    # the configuration as the search saw it: before tuning, default hyper-parameters
    before = {k: v for k, v in record.items() if k != "tuning"}
    before["hyperparameters"] = {loss: variants.HYPERPARAMETERS[loss] for loss in record["losses"]}
    cfg = RunConfig.from_record(before)
    for loss, study in studies.items():
        assert study["study"] == f"{loss}-{tune.tuning_hash(cfg, loss)}"


def command_of(record, losses):
    """compare.py's flags for a committed glyph folder's configuration."""
    argv = ["--losses", *losses, "--seeds", *map(str, record["seeds"])]
    if record["augment"] != "none":
        argv += ["--augment", record["augment"]]
    return argv


def small_cnn_untuned(path):
    """A committed folder compare.py can re-run here: the small CNN (the frozen
    EfficientNet-Lite folders need weights the tests do not install), untuned."""
    with open(path) as f:
        record = json.load(f)["configuration"]
    return record["backbone"] == "small-cnn" and not record.get("tune")


@pytest.mark.parametrize("path", [p for p in RESULTS if small_cnn_untuned(p)], ids=folder_name)
def test_compare_finds_the_committed_runs(path, tmp_path, monkeypatch):
    """compare.py with the flags of a committed folder trains nothing: every run's
    hash matches, and the configuration it records is the committed one."""
    record, runs = committed(path)
    done = {(run["loss"], run["seed"]) for run in runs}
    # the losses with every seed's run committed (a stopped run left some out)
    losses = [loss for loss in record["losses"] if all((loss, s) in done for s in record["seeds"])]
    assert losses
    shutil.copytree(os.path.join(os.path.dirname(path), "runs"), tmp_path / "runs")

    def trained(*args, **kwargs):
        raise AssertionError("a committed run was trained again")

    monkeypatch.setattr(runner, "run_one", trained)
    argv = [*command_of(record, losses), "--device", "cpu", "--quiet", "--out", str(tmp_path)]
    out = compare.main(argv)
    assert len(out["runs"]) == len(losses) * len(record["seeds"])
    written = json.loads((tmp_path / "results.json").read_text())["configuration"]
    left_out = {"out": None, "losses": None, "hyperparameters": None}
    assert {**written, **left_out} == {**record, **left_out}
    assert written["hyperparameters"] == {loss: record["hyperparameters"][loss] for loss in losses}


def test_a_setting_out_of_scope_is_none_and_not_recorded():
    glyphs = RunConfig()
    assert glyphs.image_size is None and glyphs.data_root is None
    assert glyphs.glyph_samples == 40 and glyphs.augment == "none"
    assert "image_size" not in glyphs and "glyph_samples" in glyphs
    cub = RunConfig(dataset="cub", data_root="/data/cub")
    assert cub.image_size == 224 and cub.glyph_samples is None and cub.augment == "standard"
    assert cub["data_root"] == "/data/cub" and "glyph_samples" not in cub
    resnet = RunConfig(backbone="resnet18")
    assert "pretrained_weights" in resnet and "googlenet_transform_input" not in resnet


def test_settings_filled_in_later_are_recorded_once_set():
    cfg = RunConfig()
    assert "data" not in cfg and "tuning" not in cfg and "evaluate_start" not in cfg
    later = cfg.replace(data="glyphs (...)", evaluate_start=False)
    assert later["data"] == "glyphs (...)" and later["evaluate_start"] is False
    assert cfg.data is None  # a replace leaves the original as it was


def test_a_record_with_an_unknown_setting_is_refused():
    with pytest.raises(ValueError, match="not a setting of a run: \\['colour'\\]"):
        RunConfig.from_record({**RunConfig().record(), "colour": "red"})
    with pytest.raises(ValueError, match="dataset must be one of"):
        RunConfig(dataset="mnist")
