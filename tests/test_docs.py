"""The documentation: every relative link in README.md, docs/ and examples/
resolves to a file git tracks, no file points outside the repository, the
code blocks marked as tested run, README stays a front page, and the site
builds with ``mkdocs build --strict``."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
# an outside file some of our notes were once written from; users never see it
OUTSIDE = re.compile(r"HTL_SPEC|PML_NOTES|GLYPHS_NOTES|\.\./shared")
#: put on the line before a ```python block: the block runs in the tests
TESTED = "<!-- tested -->"


def repository_files():
    """Files git tracks (what a clone has); every file under ROOT without git."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return {p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*") if p.is_file()}
    return set(filter(None, listed.split("\0")))


FILES = repository_files()
DOCS = sorted(
    f
    for f in FILES
    if f.endswith(".md") and (f.count("/") == 0 or f.startswith(("docs/", "examples/")))
)


def slug(heading: str) -> str:
    """GitHub's (and mkdocs') anchor for a heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path):
    return {slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", path.read_text(), re.M)}


def links(doc: str):
    text = (ROOT / doc).read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # code blocks hold no links
    return [m.group(1) for m in LINK.finditer(text)]


def test_the_documents_are_found():
    assert "README.md" in DOCS and "docs/method.md" in DOCS and "docs/index.md" in DOCS


@pytest.mark.parametrize("doc", DOCS)
def test_relative_links_resolve_to_tracked_files(doc):
    broken = []
    for target in links(doc):
        if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        path = (ROOT / doc).parent / path_part if path_part else ROOT / doc
        relative = (
            path.resolve().relative_to(ROOT).as_posix()
            if path.resolve().is_relative_to(ROOT)
            else None
        )
        if relative is None:
            broken.append(f"{target} (outside the repository)")
        elif (
            path_part
            and relative not in FILES
            and not any(f.startswith(relative + "/") for f in FILES)
        ):
            broken.append(f"{target} (not in git)")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{target} (no such heading)")
    assert not broken, f"{doc}: {broken}"


def test_no_file_points_outside_the_repository():
    offenders = []
    for name in FILES:
        if name == "tests/test_docs.py" or not name.endswith(
            (".py", ".md", ".toml", ".cfg", ".txt", ".sh", ".cff", ".yml")
        ):
            continue
        text = (ROOT / name).read_text(encoding="utf-8", errors="replace")
        offenders += [f"{name}: {m.group(0)}" for m in OUTSIDE.finditer(text)]
    assert not offenders, offenders


# ------------------------------------------------------------ README, a front page
def test_readme_is_a_front_page():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines"
    swap = next(i for i, line in enumerate(lines) if "HierarchicalTripletLoss()" in line)
    assert swap < 60, f"the swap is on line {swap + 1}"
    commit = re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b")
    assert not commit.search("\n".join(lines)), "a commit hash in README"


def test_readme_runs_the_test_command_that_ci_runs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    command = 'pip install -e ".[dev]" && python -m pytest -q'
    assert command in readme and command in ci


# ------------------------------------------------------------ tested code blocks
def marked_blocks():
    """(document, index, code) of every ```python block marked TESTED."""
    blocks = []
    for doc in DOCS:
        text = (ROOT / doc).read_text(encoding="utf-8")
        for i, m in enumerate(
            re.finditer(re.escape(TESTED) + r"\s*\n```python\n(.*?)```", text, re.S)
        ):
            blocks.append(pytest.param(m.group(1), id=f"{doc}#{i}"))
    return blocks


#: What the tested blocks take to be the user's: data sets, models, a batch.
PRELUDE = """
import torch
from torch.utils.data import DataLoader, TensorDataset

from pml_htl import losses, miners, samplers, tree_hooks

torch.manual_seed(0)
_labels = torch.arange(48).repeat_interleave(8)
_data = torch.randn(48, 6)[_labels] + 0.3 * torch.randn(len(_labels), 6)
train_set = TensorDataset(_data[_labels < 24], _labels[_labels < 24])
train_set.labels = _labels[_labels < 24].numpy()
train_set_eval = train_set  # no augmentation here
val_set = TensorDataset(_data[_labels >= 24], _labels[_labels >= 24])
trunk, embedder = torch.nn.Linear(6, 16), torch.nn.Linear(16, 8)
model = torch.nn.Sequential(trunk, embedder)
optimizers = {
    "trunk_optimizer": torch.optim.Adam(trunk.parameters(), lr=1e-3),
    "embedder_optimizer": torch.optim.Adam(embedder.parameters(), lr=1e-3),
}
device, num_epochs, path = torch.device("cpu"), 1, "checkpoint.pth"
embeddings, labels = model(train_set.tensors[0][:32]), train_set.tensors[1][:32]
loss_func = losses.HierarchicalTripletLoss()
miner = miners.HierarchicalTripletMiner()
sampler = samplers.AnchorNeighborSampler(train_set.labels, anchors_per_batch=2, seed=0)
hook = tree_hooks.TreeRebuildHook(train_set_eval, consumers=[loss_func, sampler])
"""


@pytest.mark.parametrize("code", marked_blocks())
def test_marked_code_blocks_run(code, tmp_path):
    script = tmp_path / "block.py"
    script.write_text(PRELUDE + code)
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TQDM_DISABLE": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "WiringWarning" not in done.stderr, done.stderr


def test_the_front_page_and_getting_started_blocks_are_tested():
    names = {p.id.split("#")[0] for p in marked_blocks()}
    assert {"README.md", "docs/getting-started.md"} <= names


# ------------------------------------------------------------ the site
def test_mkdocs_build_strict(tmp_path):
    """Broken links, unknown references and missing API objects fail the build."""
    # mkdocs is in the dev extra (docs): without it this fails, it does not skip
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-5000:]
