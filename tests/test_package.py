"""The package's shape: one direction of imports, and PML's import lines working
with pml_htl in place of pytorch_metric_learning."""

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_metric_learning

import pml_htl

PACKAGE_DIR = Path(pml_htl.__file__).parent


def internal_imports():
    """{module: set of pml_htl modules it imports}, read from the source."""
    graph = {}
    for path in PACKAGE_DIR.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        name = ".".join(parts)
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = parts if is_package else parts[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    stem = ".".join(base + ([node.module] if node.module else []))
                else:
                    stem = node.module or ""
                if stem.split(".")[0] != "pml_htl":
                    continue
                for alias in node.names:  # "from . import x" may name a submodule
                    full = f"{stem}.{alias.name}"
                    is_module = (PACKAGE_DIR.parent / (full.replace(".", "/") + ".py")).exists()
                    is_module |= (PACKAGE_DIR.parent / full.replace(".", "/")).is_dir()
                    targets.add(full if is_module else stem)
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.split(".")[0] == "pml_htl"}
        graph[name] = targets - {name}
    return graph


def test_module_imports_have_no_cycle():
    graph = internal_imports()
    assert "pml_htl.tree.hierarchical_class_tree" in graph  # the reader found the modules
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in graph.get(node, ()):
            if state.get(nxt) == "open":
                raise AssertionError(" -> ".join(stack + [node, nxt]))
            if nxt not in state:
                visit(nxt, stack + [node])
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node, [])


def test_tree_depends_on_nothing_above_it():
    allowed = ("pml_htl.tree", "pml_htl._validation", "pml_htl._sync", "pml_htl._logging")
    for module, targets in internal_imports().items():
        if module.startswith("pml_htl.tree.") or module == "pml_htl.tree":
            above = [t for t in targets if not t.startswith(allowed)]
            assert not above, f"{module} imports {above}"


def pml_modules():
    """Every module of pytorch_metric_learning, by name."""
    names = []
    for info in pkgutil.walk_packages(pytorch_metric_learning.__path__, "pytorch_metric_learning."):
        names.append(info.name)
    return names


def stands_in(ours, pml) -> bool:
    """The same object, or pml_htl's subclass of a PML class (CrossBatchMemory),
    or pml_htl's module of the same name (losses.cross_batch_memory)."""
    if ours is pml:
        return True
    if isinstance(pml, type):
        return isinstance(ours, type) and issubclass(ours, pml)
    return isinstance(pml, type(sys)) and ours.__name__.startswith("pml_htl.")


@pytest.mark.parametrize("pml_name", pml_modules())
def test_every_pml_module_has_a_pml_htl_stand_in(pml_name):
    """``pytorch_metric_learning.X.Y`` -> ``pml_htl.X.Y`` gives PML's names, and
    the very same objects (one LpDistance class, one COLLECT_STATS flag)."""
    try:
        pml = importlib.import_module(pml_name)
    except ImportError as e:  # e.g. a data set module without its optional dependency
        pytest.skip(f"{pml_name} does not import here: {e}")
    ours = importlib.import_module(pml_name.replace("pytorch_metric_learning", "pml_htl", 1))
    public = [n for n in dir(pml) if not n.startswith("_")]
    missing = [n for n in public if not hasattr(ours, n)]
    assert not missing, f"{ours.__name__} lacks {missing}"
    different = [n for n in public if not stands_in(getattr(ours, n), getattr(pml, n))]
    assert not different, f"{ours.__name__} holds other objects for {different}"


PML_SCRIPT = """
from pytorch_metric_learning import distances, losses, miners, reducers, regularizers
from pytorch_metric_learning import samplers, testers, trainers
from pytorch_metric_learning.utils import common_functions as c_f
from pytorch_metric_learning.utils import logging_presets
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
import pytorch_metric_learning.utils.loss_and_miner_utils as lmu
import torch

c_f.COLLECT_STATS = True
loss_func = losses.TripletMarginLoss(
    distance=distances.CosineSimilarity(),
    reducer=reducers.ThresholdReducer(low=0),
    embedding_regularizer=regularizers.LpRegularizer(),
)
miner = miners.MultiSimilarityMiner(epsilon=0.2)
x, y = torch.randn(16, 8, requires_grad=True), torch.arange(4).repeat(4)
loss_func(x, y, miner(x, y)).backward()
assert loss_func.collect_stats  # the flag set through c_f reached PML's loss
sampler = samplers.MPerClassSampler(y, m=2, length_before_new_iter=16)
assert callable(trainers.MetricLossOnly) and callable(testers.GlobalEmbeddingSpaceTester)
assert callable(logging_presets.HookContainer) and callable(lmu.get_all_pairs_indices)
calc = AccuracyCalculator(include=("precision_at_1",), k=1, knn_func=None)
print("ok")
"""


def test_a_pml_script_runs_with_pml_htl_in_its_import_lines(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(PML_SCRIPT.replace("pytorch_metric_learning", "pml_htl"))
    assert "pytorch_metric_learning" not in script.read_text()
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ok")


def test_the_old_hooks_module_still_imports_with_a_deprecation_warning():
    sys.modules.pop("pml_htl.hooks", None)
    with pytest.warns(FutureWarning, match="tree_hooks"):
        hooks = importlib.import_module("pml_htl.hooks")
    assert hooks.TreeRebuildHook is pml_htl.TreeRebuildHook


def test_pml_htl_has_no_hooks_attribute_that_shadows_pml_idiom():
    """``hooks = logging_presets.get_hook_container(...)`` next to
    ``from pml_htl import *`` must not meet a pml_htl ``hooks``."""
    assert "hooks" not in pml_htl.__all__


def test_no_test_file_imports_another_test_file():
    """Shared data and references live in tests/helpers.py, so a test file can be
    read, run and deleted on its own."""
    offenders = []
    for path in sorted(Path(__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            offenders += [
                f"{path.name}: {n}" for n in names if n.split(".")[-1].startswith("test_")
            ]
    assert not offenders, offenders
