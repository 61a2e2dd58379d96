"""Every relative link and image in README.md and docs/ resolves to a file in
the repository (tracked by git, not merely present on this disk), and no file
points outside the repository."""

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
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path):
    return {slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", path.read_text(), re.M)}


def links(doc: str):
    text = (ROOT / doc).read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # code blocks hold no links
    return [m.group(1) for m in LINK.finditer(text)]


def test_the_documents_are_found():
    assert "README.md" in DOCS and "docs/method.md" in DOCS


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
            (".py", ".md", ".toml", ".cfg", ".txt", ".sh", ".cff")
        ):
            continue
        text = (ROOT / name).read_text(encoding="utf-8", errors="replace")
        offenders += [f"{name}: {m.group(0)}" for m in OUTSIDE.finditer(text)]
    assert not offenders, offenders


def quick_start_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Quick start for a PML user") :]
    return section[section.index("```python") + len("```python") : section.index("```\n")]


QUICK_START_PRELUDE = """
import torch
from torch.utils.data import TensorDataset

torch.manual_seed(0)
labels = torch.arange(48).repeat_interleave(8)
data = torch.randn(48, 6)[labels] + 0.3 * torch.randn(len(labels), 6)
train_set = TensorDataset(data[labels < 24], labels[labels < 24])
train_set.labels = labels[labels < 24].numpy()
val_set = TensorDataset(data[labels >= 24], labels[labels >= 24])
trunk, embedder = torch.nn.Linear(6, 16), torch.nn.Linear(16, 8)
optimizers = {
    "trunk_optimizer": torch.optim.Adam(trunk.parameters(), lr=1e-3),
    "embedder_optimizer": torch.optim.Adam(embedder.parameters(), lr=1e-3),
}
device, num_epochs = torch.device("cpu"), 1
"""


def test_readme_quick_start_is_an_excerpt_of_the_trainer_example():
    example = (ROOT / "examples" / "train_with_pml_trainer.py").read_text(encoding="utf-8")
    example_lines = {line.strip() for line in example.splitlines()}
    block = quick_start_block()
    core = block[block.index("loss_func =") :]
    missing = [line for line in core.splitlines() if line.strip() not in example_lines]
    assert not missing, missing


def test_readme_quick_start_runs(tmp_path):
    """The README's block, given only the pipeline pieces it says are the user's."""
    script = tmp_path / "quick_start.py"
    script.write_text(QUICK_START_PRELUDE + quick_start_block())
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TQDM_DISABLE": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "WiringWarning" not in done.stderr
