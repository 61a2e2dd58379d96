"""--sampler for every loss, the "<loss>_an" rows, and the paired test of each against
its loss: does the A-N sampler help every loss?"""

import json
import types

import numpy as np
import pytest
from helpers import write_folder_dataset
from pytorch_metric_learning import samplers as pml_samplers

from benchmarks import compare, variants
from benchmarks.config import RunConfig, run_options
from benchmarks.stats import sampler_tests as sampler_stats
from benchmarks.training import epochs, parts
from pml_htl import AnchorNeighborSampler

LABELS = np.repeat(np.arange(40), 5)


def cfg_with(sampler, losses=("triplet", "htl", "contrastive")):
    hp = {loss: dict(variants.HYPERPARAMETERS[loss]) for loss in losses}
    return RunConfig(
        batch_size=16, classes_per_anchor=2, samples_per_class=2, iters_per_epoch=2,
        hyperparameters=hp, losses=list(losses), sampler=sampler,
    )  # fmt: skip


@pytest.mark.parametrize("choice", ["default", "mperclass", "anchor-neighbor"])
def test_the_sampler_of_every_loss(choice, blob_dataset):
    cfg = cfg_with(choice)
    for loss in cfg.losses:
        sampler = parts.build_sampler(loss, 0, cfg, LABELS, 1)
        own = variants.VARIANTS[loss].sampler
        wanted = own if choice == "default" else variants.SAMPLER_CHOICES[choice]
        assert run_options(loss, cfg)["sampler"] == wanted
        kind = AnchorNeighborSampler if wanted == variants.ANCHOR_NEIGHBOR else None
        assert isinstance(sampler, kind or pml_samplers.MPerClassSampler)
        built = variants.build_loss(loss, cfg.hyperparameters[loss], collect_stats=False)
        splits = types.SimpleNamespace(train=blob_dataset, train_eval=blob_dataset)
        hook = parts.build_tree_hook(loss, [built.loss, sampler], splits, cfg, False)
        # a tree where the loss uses one or the sampler draws from one
        assert (hook is not None) == (loss == "htl" or wanted == variants.ANCHOR_NEIGHBOR)
        if hook is not None and loss != "htl":
            assert hook.consumers == [sampler]  # the tree is for the sampler alone


def test_the_an_rows_are_their_loss_on_anchor_neighbour_batches():
    for row, loss in variants.AN_ROWS.items():
        mine, theirs = variants.VARIANTS[row], variants.VARIANTS[loss]
        assert mine.build is theirs.build
        assert dict(mine.hyperparameters) == dict(theirs.hyperparameters)
        assert mine.sampler == variants.ANCHOR_NEIGHBOR and mine.uses_tree
        assert mine.group == variants.ABLATION and row in variants.ABLATIONS
        assert mine.title == f"ablation: {theirs.title}, A-N sampler"
    assert sorted(variants.AN_ROWS) == sorted(
        ["contrastive_an", "triplet_an", "margin_an", "multi_similarity_an"]
    )


def test_titles_name_the_sampler_the_option_chose():
    assert variants.titles_for("default") == variants.LOSS_TITLES
    forced = variants.titles_for("mperclass")
    assert forced["htl"] == "HTL (tree per epoch), MPerClass sampler"
    assert forced["triplet"] == "Triplet, MPerClass sampler"
    assert forced["triplet_an"] == "ablation: Triplet, MPerClass sampler"
    assert variants.titles_for("anchor-neighbor")["margin"] == "Margin, A-N sampler"


@pytest.fixture(scope="module")
def folder_root(tmp_path_factory):
    return write_folder_dataset(tmp_path_factory.mktemp("folder_data"), 12, 4)


def test_a_loss_without_a_tree_rebuilds_the_samplers_tree_every_epoch(
    folder_root, tmp_path, monkeypatch
):
    built = []
    real = epochs.EpochEnd.rebuild_tree

    def spy(self, trainer, *args):
        real(self, trainer, *args)
        epoch = getattr(trainer, "epoch", 0)  # none before training
        built.append((self.name, epoch, self.tree_hook.tree, trainer.sampler.tree))

    monkeypatch.setattr(epochs.EpochEnd, "rebuild_tree", spy)
    out = tmp_path / "out"
    compare.main(
        ["--dataset", "folder", "--data-root", folder_root, "--out", str(out),
         "--losses", "contrastive", "--sampler", "anchor-neighbor", "--epochs", "3",
         "--iters-per-epoch", "2", "--batch-size", "8", "--classes-per-anchor", "2",
         "--samples-per-class", "2", "--embedding-size", "8", "--image-size", "16",
         "--device", "cpu", "--quiet"]
    )  # fmt: skip
    # before training, and after every epoch but the last
    assert [(name, epoch) for name, epoch, _, _ in built] == [
        ("contrastive seed 0", 0), ("contrastive seed 0", 1), ("contrastive seed 0", 2)
    ]  # fmt: skip
    trees = [tree for _, _, tree, _ in built]
    assert all(sampler_tree is tree for _, _, tree, sampler_tree in built)
    assert len({id(t) for t in trees}) == 3  # a new tree each time
    results = json.loads((out / "results.json").read_text())
    (run,) = results["runs"]
    assert run["sampler"] == variants.ANCHOR_NEIGHBOR and "diagnostics" not in run
    assert results["configuration"]["sampler"] == "anchor-neighbor"
    assert "Contrastive, A-N sampler" in (out / "results.md").read_text()


def record(loss, seed, r1, mapr):
    final = {"recall_at_1": r1, "mean_average_precision_at_r": mapr}
    hits = ("1" * int(40 * r1)).ljust(40, "0")
    return {"loss": loss, "seed": seed, "final": final, "query_hits_at_1": hits}


def test_each_an_row_is_tested_against_its_loss():
    runs = [
        record(loss, seed, r1 + 0.05 * seed, mapr + 0.01 * seed)
        for loss, r1, mapr in [
            ("triplet", 0.5, 0.30), ("triplet_an", 0.6, 0.33),
            ("margin", 0.5, 0.30), ("margin_an", 0.45, 0.28),
            ("contrastive_an", 0.5, 0.3),  # its loss did not run: no test
        ]
        for seed in (0, 1, 2)
    ]  # fmt: skip
    losses = ["triplet", "triplet_an", "margin", "margin_an", "contrastive_an"]
    tests = sampler_stats.sampler_tests(runs, losses, variants.AN_ROWS)
    assert [(t["loss"], t["against"]) for t in tests] == [
        ("triplet_an", "triplet"), ("margin_an", "margin")
    ]  # fmt: skip
    triplet, margin = tests
    assert triplet["mean_average_precision_at_r"]["difference"] == pytest.approx(0.03)
    assert margin["recall_at_1"]["difference"] == pytest.approx(-0.05, abs=0.01)
    assert all("p_holm" in t["mean_average_precision_at_r"] for t in tests)
    md = sampler_stats.sampler_tests_markdown(tests, variants.LOSS_TITLES)
    assert "## Does the A-N sampler help every loss?" in md
    assert "| ablation: Triplet, A-N sampler | Triplet | 3 |" in md
