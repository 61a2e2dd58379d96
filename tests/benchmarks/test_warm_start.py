"""--warm-start ITERS: the triplet loss for exactly ITERS iterations, once per seed;
then each loss for the rest of the budget, HTL's first tree from the warmed-up
network; the curve across both phases."""

import pytest
import torch
from helpers import write_folder_dataset

from benchmarks import cli, runner, variants
from benchmarks.config import RunConfig, run_options
from benchmarks.console import Console
from benchmarks.evaluation.accuracy import make_accuracy_calculator
from benchmarks.models import make_trunk
from benchmarks.training import epochs, run, warm_start
from pml_htl import TreeRebuildHook

CPU = torch.device("cpu")
#: 3 epochs of 4 iterations; the warm start ends inside the second epoch
EPOCHS, IPE, WARM = 3, 4, 6


@pytest.fixture(scope="module")
def folder_root(tmp_path_factory):
    return write_folder_dataset(tmp_path_factory.mktemp("folder_data"), 12, 4)


def make_cfg(folder_root, tmp_path, losses=("triplet", "htl"), warm=WARM):
    hp = {loss: dict(variants.HYPERPARAMETERS[loss]) for loss in losses}
    return RunConfig(
        dataset="folder", data_root=folder_root, image_size=16, embedding_size=8,
        batch_size=8, classes_per_anchor=2, samples_per_class=2, epochs=EPOCHS,
        iters_per_epoch=IPE, hyperparameters=hp, losses=list(losses), warm_start=warm,
        out=str(tmp_path), logs=False,
    )  # fmt: skip


class Counting(torch.nn.Module):
    """Counts the forward calls of the loss it wraps."""

    def __init__(self, loss):
        super().__init__()
        self.inner, self.calls = loss, 0

    def forward(self, *args, **kwargs):
        self.calls += 1
        return self.inner(*args, **kwargs)


def test_the_triplet_loss_for_exactly_iters_then_htl_from_that_network(
    folder_root, tmp_path, monkeypatch
):
    cfg = make_cfg(folder_root, tmp_path)
    splits = runner.load_splits(cfg, progress=False)
    calculator = make_accuracy_calculator(recall_at_ks=(1, 2), device=CPU)
    warm_losses = []
    real_build = warm_start.build_loss

    def counted(name, hp, collect_stats):
        parts = real_build(name, hp, collect_stats)
        warm_losses.append((name, Counting(parts.loss)))
        return parts._replace(loss=warm_losses[-1][1])

    monkeypatch.setattr(warm_start, "build_loss", counted)
    first_trees = []
    real_rebuild = epochs.EpochEnd.rebuild_tree

    def spy(self, trainer, iteration):
        real_rebuild(self, trainer, iteration)
        if not first_trees:
            first_trees.append((iteration, self.tree_hook.tree, self.tree_hook.dataset))

    monkeypatch.setattr(epochs.EpochEnd, "rebuild_tree", spy)
    warm_starts = warm_start.WarmStarts()
    quiet = Console(quiet=True)
    htl = run.run_one("htl", 0, cfg, splits, calculator, CPU, quiet, warm_starts)
    ((name, loss),) = warm_losses
    assert name == "triplet" and loss.calls == WARM
    state = warm_starts.get(0, WARM, cfg, splits, calculator, CPU)
    assert warm_starts.trained == 1
    # the first tree: from the warmed-up network, after WARM iterations
    iteration, tree, dataset = first_trees[0]
    assert iteration == WARM
    embedder = torch.nn.Linear(state.models["embedder"]["weight"].shape[1], 8)
    trunk, _ = make_trunk(cfg.backbone, splits.channels)
    trunk.load_state_dict(state.models["trunk"])
    embedder.load_state_dict(state.models["embedder"])
    again = TreeRebuildHook(dataset, progress=False).rebuild(torch.nn.Sequential(trunk, embedder))
    for key, value in tree.state_dict().items():
        torch.testing.assert_close(again.state_dict()[key], value, msg=key)
    # the curve covers both phases, at the epochs' ends; the rest of the budget is HTL's
    assert [p["iteration"] for p in htl["curve"]] == [0, 4, 8, 12]
    warm_curve = [{k: v for k, v in p.items() if k != "query_hits_at_1"} for p in state.curve]
    assert htl["curve"][:2] == warm_curve  # the warm phase's evaluations
    assert htl["warm_start"]["iterations"] == WARM and htl["warm_start"]["loss"] == "triplet"
    assert [d["iteration"] for d in htl["diagnostics"]] == [6, 8]
    assert htl["iterations"] == EPOCHS * IPE


def test_the_warm_phase_is_trained_once_per_seed_and_reused_alike(folder_root, tmp_path):
    cfg = make_cfg(folder_root, tmp_path, losses=("contrastive", "htl"))
    splits = runner.load_splits(cfg, progress=False)
    calculator = make_accuracy_calculator(recall_at_ks=(1, 2), device=CPU)
    quiet = Console(quiet=True)
    shared = warm_start.WarmStarts()
    run.run_one("contrastive", 0, cfg, splits, calculator, CPU, quiet, shared)
    after = run.run_one("htl", 0, cfg, splits, calculator, CPU, quiet, shared)
    assert shared.trained == 1
    alone = run.run_one("htl", 0, cfg, splits, calculator, CPU, quiet)  # its own warm phase
    assert after["final"] == alone["final"] and after["curve"] == alone["curve"]


def config_of(*argv):
    return cli.resolve_config(cli.build_parser().parse_args(list(argv)))


def test_warm_start_settings():
    assert config_of().warm_start is None and "warm_start" not in config_of()
    assert config_of("--warm-start", "250")["warm_start"] == 250
    paper = config_of("--preset", "paper", "--allow-random-init")
    assert paper.warm_start == 1000  # 5 of its 30 epochs
    shorter = config_of("--preset", "paper", "--allow-random-init", "--epochs", "3")
    assert shorter.warm_start == 100  # a sixth of the budget
    tiny = ["--preset", "paper", "--allow-random-init", "--epochs", "1", "--iters-per-epoch", "5"]
    assert config_of(*tiny).warm_start is None  # a sixth of 5 iterations: none
    cfg = config_of("--losses", "htl_warm", "htl", "--epochs", "5")
    assert run_options("htl_warm", cfg)["warm_start"] == variants.HTL_WARM_ITERATIONS
    assert run_options("htl", cfg)["warm_start"] is None
    cfg = config_of("--losses", "htl_warm", "htl", "--warm-start", "100")
    assert run_options("htl_warm", cfg)["warm_start"] == 100
    assert run_options("htl", cfg)["warm_start"] == 100
    assert "htl_warm" in config_of("--diagnosis").losses


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--warm-start", "1000"], "--warm-start 1000 must lie in [1, 999], below the budget"),
        (["--warm-start", "0"], "--warm-start 0 must lie in [1, 999]"),
        (["--quick", "--diagnosis"], "htl_warm warms up for 250 iterations"),
    ],
)
def test_a_warm_start_not_below_the_budget_is_one_error_line(argv, message):
    with pytest.raises(SystemExit, match="^error: " + message.replace("[", "\\[")):
        config_of(*argv)
