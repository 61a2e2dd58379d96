"""End-to-end smoke tests of benchmarks/compare.py on a tiny generated folder data set."""

import json
import os
import re
import select
import subprocess
import sys
import types

import numpy as np
import pytest
import torch
from helpers import write_folder_dataset
from PIL import Image

from benchmarks import cli, compare, config, runner, variants
from benchmarks.config import RunConfig
from benchmarks.data import image_transforms
from benchmarks.data.transforms import LIGHT_DEGREES, LIGHT_SHIFT
from benchmarks.evaluation import evaluate
from benchmarks.training import parts

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMPARE = ["-m", "benchmarks.compare"]
BAR_FRAME = re.compile(r"\d+/\d+ \[|it/s\]|s/it\]")  # tqdm's "3/40 [00:01<00:02, 1.4it/s]"


@pytest.fixture(scope="module")
def folder_root(tmp_path_factory):
    return write_folder_dataset(tmp_path_factory.mktemp("folder_data"), 8, 6)


def args_for(folder_root, out, losses=("triplet", "htl"), seeds=("0", "1")):
    return [
        "--dataset", "folder", "--data-root", folder_root, "--out", str(out),
        "--losses", *losses, "--seeds", *seeds,
        "--epochs", "2", "--iters-per-epoch", "2", "--batch-size", "8",
        "--classes-per-anchor", "2", "--samples-per-class", "2",
        "--embedding-size", "8", "--image-size", "16", "--device", "cpu",
    ]  # fmt: skip


def test_end_to_end_outputs(folder_root, tmp_path):
    out = tmp_path / "out"
    compare.main(args_for(folder_root, out))
    for name in ("results.json", "results.csv", "results.md", "convergence.png"):
        assert (out / name).stat().st_size > 0
    results = json.loads((out / "results.json").read_text())
    runs = {(r["loss"], r["seed"]) for r in results["runs"]}
    assert runs == {("triplet", 0), ("triplet", 1), ("htl", 0), ("htl", 1)}
    for run in results["runs"]:
        assert [p["epoch"] for p in run["curve"]] == [0, 1, 2]
        for key in ("recall_at_1", "recall_at_8", "precision_at_1", "mean_average_precision_at_r"):
            assert 0.0 <= run["final"][key] <= 1.0
        assert run["final"]["recall_at_1"] == pytest.approx(run["final"]["precision_at_1"])
    assert results["configuration"]["seeds"] == [0, 1]
    assert results["configuration"]["image_size"] == 16
    assert "glyph_samples" not in results["configuration"]
    assert set(results["configuration"]["hyperparameters"]) == {"triplet", "htl"}
    assert results["environment"]["versions"]["torch"]
    csv_lines = (out / "results.csv").read_text().strip().splitlines()
    assert len(csv_lines) == 1 + 4 and csv_lines[0].startswith("loss,seed,recall_at_1")
    md = (out / "results.md").read_text()
    assert "| R@1 |" in md and "Triplet" in md and "HTL" in md and "±" in md
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    table = []  # the first table: the main one
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        table.append(line)
    assert "tree s" in table[0] and len({line.count("|") for line in table}) == 1
    assert (out / "convergence.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert results["configuration"]["augment"] == "standard"  # the folder data set's default
    for run in results["runs"]:
        hits = run["query_hits_at_1"]  # the per-query R@1 hits behind the paired tests
        assert set(hits) <= {"0", "1"}
        assert hits.count("1") / len(hits) == pytest.approx(run["final"]["recall_at_1"])
        assert ("diagnostics" in run) == (run["loss"] == "htl")
    htl_run = next(r for r in results["runs"] if r["loss"] == "htl")
    assert [d["iteration"] for d in htl_run["diagnostics"]] == [0, 2]  # a tree per epoch
    assert all(0 <= d["active_fraction"] <= 1 for d in htl_run["diagnostics"])
    statistics = results["statistics"]
    assert statistics["intervals"]["htl"]["recall_at_1"]["n"] == 2
    (test,) = statistics["tests"]  # triplet against htl, once
    assert {test["loss"], test["against"]} == {"triplet", "htl"} and test["seeds"] == [0, 1]
    assert "p_holm" in test["recall_at_1"] and "p_holm" in test["mean_average_precision_at_r"]
    assert set(statistics["convergence"]["losses"]) == {"triplet", "htl"}
    # two seeds: a smoke run, whose tests stay in results.json, out of results.md
    assert md.startswith("# Smoke run") and "## Paired tests" not in md
    assert "## HTL's margins per tree" in md


@pytest.mark.parametrize("dataset", ["glyphs", "fashion-mnist", "folder"])
@pytest.mark.parametrize("augment", ["standard", "light", "none"])
def test_augmentation_choices(dataset, augment):
    """standard: random resized crops and flips; light: small shifts and rotations;
    none: the evaluation view. Every data set, shapes kept (the small images get no
    --image-size on a trunk that does not read it)."""
    import torchvision.transforms as T

    train, evaluate = image_transforms(dataset, augment, 16 if dataset == "folder" else None)

    def parts(transform):
        if transform is None:
            return []
        if isinstance(transform, T.Compose):
            return [p for t in transform.transforms for p in parts(t)]
        return [transform]

    kinds = {type(p) for p in parts(train)}
    assert (T.RandomResizedCrop in kinds) == (augment == "standard")
    assert (T.RandomHorizontalFlip in kinds) == (augment == "standard")
    assert (T.RandomAffine in kinds) == (augment == "light")
    if augment == "light":
        (affine,) = [p for p in parts(train) if isinstance(p, T.RandomAffine)]
        assert affine.degrees == [-LIGHT_DEGREES, LIGHT_DEGREES]
        assert affine.translate == (LIGHT_SHIFT, LIGHT_SHIFT)
    if augment == "none":
        assert [type(p) for p in parts(train)] == [type(p) for p in parts(evaluate)]
    size = {"glyphs": 32, "fashion-mnist": 28, "folder": 16}[dataset]
    if dataset == "glyphs":
        image = torch.rand(1, 32, 32)
        out = image if train is None else train(image)
    else:
        side = 28 if dataset == "fashion-mnist" else 20  # folder images are resized to 16
        pixels = np.random.default_rng(0).integers(0, 255, (side, side, 3), np.uint8)
        image = Image.fromarray(pixels)
        out = train(image.convert("L") if dataset == "fashion-mnist" else image)
    assert out.shape[-2:] == (size, size)


def test_augment_default_per_data_set_and_recorded(folder_root):
    for dataset, expected in (("glyphs", "none"), ("fashion-mnist", "none"), ("cub", "standard")):
        assert config.DEFAULT_AUGMENT[dataset] == expected
    cfg = cli.resolve_config(cli.build_parser().parse_args(["--quick"]))
    assert cfg["augment"] == "none"
    light = cli.resolve_config(cli.build_parser().parse_args(["--quick", "--augment", "light"]))
    assert light["augment"] == "light"
    # a default augmentation leaves the hash of runs made before the option existed
    legacy = {k: v for k, v in cfg.items() if k not in ("augment", "tune")}
    assert config.config_hash(cfg, "htl") == config.config_hash(legacy, "htl")
    assert config.config_hash(light, "htl") != config.config_hash(cfg, "htl")


def test_training_statistics_row_runs_without_extra_passes(folder_root, tmp_path, monkeypatch):
    """htl_train_stats embeds the training set for its first tree only."""
    from pml_htl import tree_hooks

    passes = []
    real = tree_hooks.TreeRebuildHook._embedded_statistics

    def counted(hook, *args, **kwargs):
        passes.append(hook.statistics_from)
        return real(hook, *args, **kwargs)

    monkeypatch.setattr(tree_hooks.TreeRebuildHook, "_embedded_statistics", counted)
    out = tmp_path / "out"
    compare.main(args_for(folder_root, out, losses=("htl", "htl_train_stats"), seeds=("0",)))
    # 2 epochs: the initial tree and one after the first epoch (none after the last)
    assert passes == ["inference", "inference", "training"]
    run = json.loads((out / "runs" / "htl_train_stats__seed0.json").read_text())
    assert run["choices"] == {"statistics_from": "training"}
    assert [p["epoch"] for p in run["curve"]] == [0, 1, 2]
    assert "tree from the training steps" in (out / "results.md").read_text()


def test_resume_skips_finished_runs(folder_root, tmp_path, monkeypatch):
    out = tmp_path / "out"
    real = runner.run_one
    calls = []

    def interrupted(loss, seed, *args, **kwargs):
        calls.append((loss, seed))
        if len(calls) == 2:
            raise KeyboardInterrupt  # the run in progress is lost, nothing else
        return real(loss, seed, *args, **kwargs)

    monkeypatch.setattr(runner, "run_one", interrupted)
    with pytest.raises(KeyboardInterrupt):
        compare.main(args_for(folder_root, out, seeds=("0",)))
    finished = json.loads((out / "runs" / "triplet__seed0.json").read_text())
    assert not (out / "runs" / "htl__seed0.json").exists()

    calls.clear()
    monkeypatch.setattr(runner, "run_one", lambda *a, **k: calls.append(a[:2]) or real(*a, **k))
    compare.main(args_for(folder_root, out, seeds=("0",)))
    assert calls == [("htl", 0)]
    again = json.loads((out / "runs" / "triplet__seed0.json").read_text())
    assert again == finished
    assert not [f for f in os.listdir(out) if f.startswith(".tmp-")]


def test_other_configuration_in_same_out_is_refused(folder_root, tmp_path):
    out = tmp_path / "out"
    compare.main(args_for(folder_root, out, losses=("triplet",), seeds=("0",)))
    changed = args_for(folder_root, out, losses=("triplet",), seeds=("0",))
    changed[changed.index("--embedding-size") + 1] = "16"
    with pytest.raises(SystemExit, match="another configuration"):
        compare.main(changed)


@pytest.mark.parametrize("dataset", ["cub", "cars196", "sop", "inshop", "folder", "fashion-mnist"])
def test_bad_data_root_gives_a_clear_error(dataset, tmp_path):
    with pytest.raises(SystemExit, match="--data-root") as err:
        compare.main(["--dataset", dataset, "--data-root", str(tmp_path / "missing")])
    assert "expected" in str(err.value) and "downloaded" in str(err.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit, match="--data-root"):
        compare.main(["--dataset", dataset, "--data-root", str(empty)])


def test_bad_hyperparameter_override():
    with pytest.raises(SystemExit, match="LOSS.KEY=VALUE"):
        compare.main(["--hp", "nonsense"])
    with pytest.raises(SystemExit, match="no hyper-parameter"):
        compare.main(["--hp", "htl.gamma=3"])


def test_a_hyperparameter_the_loss_refuses_stops_the_run_before_any_data(monkeypatch):
    """Each loss is built once at start-up: a value it refuses is one error line
    (exit status 2, as argparse's), before the data and the other losses' runs."""

    def data_loaded(*args, **kwargs):
        raise AssertionError("a data set was loaded")

    monkeypatch.setattr(runner, "load_dataset", data_loaded)
    with pytest.raises(SystemExit) as err:
        compare.main(["--hp", "htl.beta=5", "--device", "cpu"])
    assert err.value.code == 2
    message = str(err.value)
    assert message.startswith("error: --hp htl.beta=5: htl refuses them: beta must lie in [0, 4]")
    assert "\n" not in message


def test_a_refused_hyperparameter_is_one_line_on_stderr():
    done = subprocess.run(
        [sys.executable, *COMPARE, "--hp", "htl.beta=5", "--device", "cpu"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr.startswith("error: --hp htl.beta=5: ") and done.stderr.count("\n") == 1


def test_two_processes_under_torchrun(folder_root, tmp_path):
    """compare.py under torchrun (gloo, loopback) finishes and writes its results."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += COMPARE
    cmd += args_for(folder_root, out, losses=("triplet", "htl", "htl_train_stats"), seeds=("0",))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["configuration"]["world_size"] == 2
    runs = {(r["loss"], r["seed"]) for r in results["runs"]}
    assert runs == {("triplet", 0), ("htl", 0), ("htl_train_stats", 0)}
    for run in results["runs"]:
        assert [p["epoch"] for p in run["curve"]] == [0, 1, 2]
    assert (out / "convergence.png").exists() and (out / "results.md").exists()


def test_embed_keeps_a_frozen_batchnorm_frozen(blob_dataset):
    """embed evaluates in eval mode, then gives every submodule its own mode back."""
    trunk = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.BatchNorm1d(4))
    embedder = torch.nn.Linear(4, 2)
    trunk.train(), embedder.train()
    frozen = trunk[1].eval()
    modes_seen = []
    frozen.register_forward_hook(lambda module, *_: modes_seen.append(module.training))

    embeddings, labels = evaluate.embed(
        (trunk, embedder), blob_dataset, torch.device("cpu"), 32, 0, "test"
    )

    assert embeddings.shape == (len(blob_dataset), 2) and len(labels) == len(blob_dataset)
    assert modes_seen and not any(modes_seen)
    assert trunk.training and trunk[0].training and embedder.training
    assert not frozen.training


def script_env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
    return dict(env, OMP_NUM_THREADS="1", **extra)


def run_into_file(args, log_path, env) -> str:
    """compare.py with stdout and stderr in one file, as in a CI log; the log's text."""
    with open(log_path, "w") as log:
        done = subprocess.run(
            [sys.executable, *COMPARE, *args],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=log,
            timeout=600,
        )
    text = open(log_path, encoding="utf-8").read()
    assert done.returncode == 0, text[-3000:]
    return text


def run_in_terminal(args, env) -> str:
    """compare.py with stdout and stderr on a pseudo-terminal; what the terminal got."""
    import fcntl
    import pty
    import struct
    import termios

    controller, terminal = pty.openpty()
    # 24 rows, 100 columns: a new pty has none, and tqdm draws nothing in zero columns
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, *COMPARE, *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    chunks = []
    try:
        while select.select([controller], [], [], 600)[0]:
            try:
                chunk = os.read(controller, 1 << 16)
            except OSError:  # the terminal closed: the script has ended
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        proc.kill() if proc.poll() is None else None
        os.close(controller)
    text = b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")  # the tty's newlines
    assert proc.wait(timeout=60) == 0, text[-3000:]
    return text


def one_run_args(folder_root, out):
    return args_for(folder_root, out, losses=("triplet",), seeds=("0",))


SUMMARY_LINE = re.compile(r"^(\w+) seed (\d+): R@1 \d+\.\d in \d+ s$", re.M)
EPOCH_LINE = re.compile(r"^(\w+) seed (\d+): epoch (\d+)/2, \d+\.\d s, R@1 \d+\.\d$", re.M)


def test_log_file_gets_lines_not_bars(folder_root, tmp_path):
    """Redirected to a file: no bar frames, one line per epoch and per run, each on its own."""
    args = args_for(folder_root, tmp_path / "out", losses=("triplet", "htl"), seeds=("0",))
    log = run_into_file(args, tmp_path / "log.txt", script_env())

    assert "\r" not in log and "\x1b[" not in log
    assert not BAR_FRAME.search(log), BAR_FRAME.search(log)
    assert len(log.splitlines()) < 60, log
    assert SUMMARY_LINE.findall(log) == [("triplet", "0"), ("htl", "0")], log
    epochs = [(loss, epoch) for loss, _, epoch in EPOCH_LINE.findall(log)]
    assert epochs == [("triplet", "1"), ("triplet", "2"), ("htl", "1"), ("htl", "2")], log
    # PML's error block for a missing record-keeper or tensorboard came once per run
    assert "There won't be any logging" not in log and "No record_keeper" not in log
    assert log.count("CSV/TensorBoard logs skipped") <= 1
    assert "| R@1 |" in log


def test_terminal_gets_bars_unless_quiet_or_tqdm_disable(folder_root, tmp_path):
    on_terminal = run_in_terminal(one_run_args(folder_root, tmp_path / "a"), script_env())
    assert BAR_FRAME.search(on_terminal)  # else the two checks below prove nothing

    disabled = run_in_terminal(
        one_run_args(folder_root, tmp_path / "b"), script_env(TQDM_DISABLE="1")
    )
    assert not BAR_FRAME.search(disabled), disabled
    assert len(EPOCH_LINE.findall(disabled)) == 2 and SUMMARY_LINE.findall(disabled)

    quiet = run_in_terminal([*one_run_args(folder_root, tmp_path / "c"), "--quiet"], script_env())
    assert not BAR_FRAME.search(quiet), quiet
    assert not EPOCH_LINE.findall(quiet) and not SUMMARY_LINE.findall(quiet)
    assert "data:" not in quiet and "| R@1 |" in quiet


def config_of(*argv):
    return cli.resolve_config(cli.build_parser().parse_args(list(argv)))


def test_configuration_holds_only_the_settings_that_apply(folder_root):
    glyphs = config_of("--dataset", "glyphs", "--losses", "triplet", "htl")
    assert glyphs["glyph_samples"] == 40
    for key in ("image_size", "data_root", "train_classes", "pretrained_weights"):
        assert key not in glyphs
    assert set(glyphs["hyperparameters"]) == {"triplet", "htl"}

    folder = config_of("--dataset", "folder", "--data-root", folder_root, "--quick")
    assert folder["image_size"] == 224 and folder["data_root"] == folder_root
    assert "train_classes" in folder and "glyph_samples" not in folder

    mnist = config_of("--dataset", "fashion-mnist", "--data-root", folder_root)
    assert "image_size" not in mnist and "train_classes" not in mnist

    resnet = config_of("--backbone", "resnet18", "--preset", "paper")
    assert resnet["pretrained_weights"] is None and "image_size" not in resnet  # glyphs


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--dataset", "glyphs", "--image-size", "64"], "--image-size applies only to --dataset"),
        (["--dataset", "fashion-mnist", "--image-size", "28"], "--image-size applies only to"),
        (["--dataset", "folder", "--glyph-samples", "8"], "--glyph-samples applies only to"),
        (["--data-root", "somewhere"], "--data-root applies only to --dataset"),
        (["--dataset", "cub", "--train-classes", "f.txt"], "--train-classes applies only to"),
        (["--pretrained-weights", "w.pth"], "--pretrained-weights applies only to --backbone"),
        (
            ["--losses", "triplet", "--hp", "htl.beta=0.2"],
            "--hp htl.beta=0.2: htl is not among the losses",
        ),
    ],
)
def test_a_flag_that_does_not_apply_is_an_error(argv, message):
    with pytest.raises(SystemExit, match="^error: " + re.escape(message)):
        config_of(*argv)


def test_config_hash_covers_the_runs_own_settings_only():
    cfg = config_of("--losses", "triplet", "htl", "--quick")
    other_beta = config_of("--losses", "triplet", "htl", "--quick", "--hp", "htl.beta=0.2")
    spelled_out = config_of(
        "--losses", "triplet", "--epochs", "3", "--iters-per-epoch", "40", "--glyph-samples", "24"
    )
    assert config.config_hash(cfg, "triplet") == config.config_hash(other_beta, "triplet")
    assert config.config_hash(cfg, "htl") != config.config_hash(other_beta, "htl")
    assert config.config_hash(cfg, "triplet") == config.config_hash(spelled_out, "triplet")
    wider = config_of("--losses", "triplet", "htl", "--quick", "--embedding-size", "32")
    assert config.config_hash(cfg, "triplet") != config.config_hash(wider, "triplet")


def run_cfg(hyperparameters):
    """What build_sampler, build_tree_hook and run_options read: B = 64, m = t = 4."""
    return RunConfig(
        batch_size=64,
        classes_per_anchor=4,
        samples_per_class=4,
        iters_per_epoch=2,
        num_workers=0,
        hyperparameters=hyperparameters,
    )


@pytest.mark.parametrize("name", sorted(variants.CHOICE_VARIANTS))
def test_choice_variants_set_exactly_their_option(name, blob_dataset):
    """Each open-choice or diagnosis row changes one option of HTL and nothing else."""
    options = variants.CHOICE_VARIANTS[name]
    loss, miner, _ = variants.build_loss(name, {"beta": 0.1}, collect_stats=False)
    cfg = run_cfg({name: {"beta": 0.1}, "htl": {"beta": 0.1}})
    sampler = parts.build_sampler(name, 0, cfg, np.repeat(np.arange(40), 5), 1)
    default = variants.build_loss("htl", {"beta": 0.1}, collect_stats=False)[0]
    expected = dict(default.tree_options)
    expected.update({k: v for k, v in options.items() if k in default.tree_options})
    assert dict(loss.tree_options) == expected and miner is None
    assert loss.margin_scale == options.get("margin_scale", 1.0)
    m = options.get("classes_per_anchor", 4)
    assert sampler.classes_per_anchor == m and sampler.batch_size == 64
    assert sampler.anchors_per_batch == 64 // (m * 4)
    clean, augmented = blob_dataset, torch.utils.data.Subset(blob_dataset, range(len(blob_dataset)))
    splits = types.SimpleNamespace(train=augmented, train_eval=clean)
    hook = parts.build_tree_hook(name, [loss, sampler], splits, cfg, False)
    assert hook.statistics_from == options.get("statistics_from", "inference")
    assert loss.gathers_statistics == (hook.statistics_from == "training")
    view = config.run_options(name, cfg)["tree_view"]
    assert view == options.get("tree_view", "training" if "statistics_from" in options else "clean")
    if view != "training":
        assert hook.dataset is (augmented if view == "augmented" else clean)
    assert config.run_options(name, cfg)["rebuild"] == options.get("rebuild", "every_epoch")
    assert config.config_hash(compare_cfg(), name) != config.config_hash(compare_cfg(), "htl")


def test_tuned_htl_options_reach_sampler_hook_and_loss(blob_dataset):
    """HTL's tuned hyper-parameters: lambda to the loss, m and t to the sampler, the
    tree view to the hook."""
    hp = {
        "beta": 0.3,
        "margin_scale": 0.25,
        "tree_view": "augmented",
        "classes_per_anchor": 8,
        "samples_per_class": 2,
    }
    cfg = run_cfg({"htl": hp})
    loss, _, _ = variants.build_loss("htl", hp, collect_stats=False)
    assert loss.beta == 0.3 and loss.margin_scale == 0.25
    sampler = parts.build_sampler("htl", 0, cfg, np.repeat(np.arange(40), 5), 1)
    assert (sampler.classes_per_anchor, sampler.samples_per_class) == (8, 2)
    augmented = torch.utils.data.Subset(blob_dataset, range(len(blob_dataset)))
    splits = types.SimpleNamespace(train=augmented, train_eval=blob_dataset)
    hook = parts.build_tree_hook("htl", [loss, sampler], splits, cfg, False)
    assert hook.dataset is augmented and hook.statistics_from == "inference"


def compare_cfg():
    return {"hyperparameters": {n: {"beta": 0.1} for n in ["htl", *variants.CHOICE_VARIANTS]}}


def test_too_few_training_classes_for_a_batch_is_one_error_line(folder_root, tmp_path):
    """The folder fixture's 4 training classes are fewer than 256 / 2 = 128."""
    with pytest.raises(SystemExit, match="error: the training split holds 4 classes.* needs 128"):
        compare.main(args_for(folder_root, str(tmp_path / "out"), seeds=("0",)) + [
            "--batch-size", "256"])  # fmt: skip
