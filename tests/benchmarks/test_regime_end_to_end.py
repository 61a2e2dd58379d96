"""Every option of the paper's regime in one tiny comparison: a pretrained trunk (random
weights standing in for the package's), frozen, with augmented feature views and
an MLP embedder, the warm start, checkpoint selection on held-out classes and
the A-N sampler for every loss."""

import json
import os

from helpers import write_folder_dataset

from benchmarks import compare, runner
from benchmarks.evaluation.selection import best_iteration
from benchmarks.variants import ANCHOR_NEIGHBOR


def test_all_options_together(fake_lite0, tmp_path, monkeypatch):
    root = write_folder_dataset(tmp_path / "data", 16, 4)
    monkeypatch.setenv("PML_HTL_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    argv = [
        "--dataset", "folder", "--data-root", root, "--out", str(out), "--device", "cpu",
        "--backbone", "efficientnet-lite0", "--image-size", "32", "--freeze-trunk",
        "--feature-views", "2", "--augment", "light", "--warm-start", "3",
        "--select-on-val", "--val-classes", "0.25", "--sampler", "anchor-neighbor",
        "--losses", "triplet", "htl", "contrastive_an", "htl_warm", "--seeds", "0", "1",
        "--epochs", "3", "--iters-per-epoch", "2", "--batch-size", "8",
        "--classes-per-anchor", "2", "--samples-per-class", "2", "--embedding-size", "8",
        "--quiet",
    ]  # fmt: skip
    compare.main(argv)
    results = json.loads((out / "results.json").read_text())
    cfg = results["configuration"]
    assert cfg["backbone"] == "efficientnet-lite0" and cfg["image_size"] == 32
    assert cfg["freeze_trunk"] is True and cfg["embedder"] == "mlp"
    assert (cfg["feature_views"], cfg["warm_start"], cfg["val_classes"]) == (2, 3, 0.25)
    assert cfg["select_on_val"] is True and cfg["sampler"] == "anchor-neighbor"
    cache = tmp_path / "cache" / "features"
    assert len(os.listdir(cache)) == 4  # train, test, 2 views: once for every run
    sha = None
    for run in results["runs"]:
        assert set(run["feature_caches"]) == {"train", "test-query", "train:view0", "train:view1"}
        weights = run["feature_caches"]["train"]["key"]["trunk"]["weights"]
        assert weights["file"] == os.path.basename(fake_lite0)
        sha = sha or weights["sha256"]
        assert weights["sha256"] == sha
        assert run["sampler"] == ANCHOR_NEIGHBOR
        assert run["warm_start"]["iterations"] == 3
        assert [p["iteration"] for p in run["curve"]] == [0, 2, 4, 6]
        assert [p["iteration"] for p in run["validation_curve"]] == [0, 2, 4, 6]
        chosen = run["selected_checkpoint"]
        assert chosen["iteration"] == best_iteration(run["validation_curve"])
        at = next(p for p in run["curve"] if p["iteration"] == chosen["iteration"])
        assert chosen["test"]["recall_at_1"] == at["recall_at_1"]
        assert len(run["validation_classes"]) == 2
    summary = results["summary"]["htl"]
    assert set(summary["at_validation_best"]) >= {"recall_at_1", "iteration"}
    assert "to_validation_best" in results["statistics"]["convergence"]["losses"]["htl"]
    md = (out / "results.md").read_text()
    assert "## Test at the validation-best checkpoint" in md
    assert "Triplet, A-N sampler" in md and "Frozen efficientnet-lite0 trunk" in md

    def trained(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(runner, "run_one", trained)
    again = compare.main(argv)  # the same configuration: every run is found
    assert len(again["runs"]) == 8
