"""The package's shape: one direction of imports, only the plugin, and PML's
losses, miners and samplers behind pml_htl's import line."""

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import imports_of

import pml_htl

PACKAGE_DIR = Path(pml_htl.__file__).parent


def internal_imports():
    """{module: set of pml_htl modules it imports}, read from the source."""
    root = PACKAGE_DIR.parent
    graph = {}
    for path in PACKAGE_DIR.rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        targets = set()
        for stem, names in imports_of(path, root):
            if stem.split(".")[0] != "pml_htl":
                continue
            if not names:  # import pml_htl.x
                targets.add(stem)
            for alias in names:  # "from . import x" may name a submodule
                full = f"{stem}.{alias}"
                is_module = (root / (full.replace(".", "/") + ".py")).exists()
                is_module |= (root / full.replace(".", "/")).is_dir()
                targets.add(full if is_module else stem)
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


#: The PML packages that pml_htl extends with HTL's members.
EXTENDED = ("losses", "miners", "samplers")


def stands_in(ours, pml) -> bool:
    """The same object, or pml_htl's subclass of a PML class (CrossBatchMemory),
    or pml_htl's module of the same name (losses.cross_batch_memory)."""
    if ours is pml:
        return True
    if isinstance(pml, type):
        return isinstance(ours, type) and issubclass(ours, pml)
    return isinstance(pml, type(sys)) and ours.__name__.startswith("pml_htl.")


@pytest.mark.parametrize("package", EXTENDED)
def test_losses_miners_and_samplers_hold_pml_members_plus_htl(package):
    """``from pml_htl import losses`` gives PML's names, the very same objects."""
    pml = importlib.import_module(f"pytorch_metric_learning.{package}")
    ours = importlib.import_module(f"pml_htl.{package}")
    public = [n for n in dir(pml) if not n.startswith("_")]
    missing = [n for n in public if not hasattr(ours, n)]
    assert not missing, f"{ours.__name__} lacks {missing}"
    different = [n for n in public if not stands_in(getattr(ours, n), getattr(pml, n))]
    assert not different, f"{ours.__name__} holds other objects for {different}"
    htl = {"losses": "HierarchicalTripletLoss", "miners": "HierarchicalTripletMiner"}
    htl["samplers"] = "AnchorNeighborSampler"
    assert getattr(ours, htl[package]) is getattr(pml_htl, htl[package])


@pytest.mark.parametrize(
    "name", ["distances", "reducers", "regularizers", "testers", "trainers", "utils", "datasets"]
)
def test_no_other_pml_module_is_mirrored(name):
    assert not hasattr(pml_htl, name)
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(f"pml_htl.{name}")


def test_there_is_no_hooks_module():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("pml_htl.hooks")


PML_SCRIPT = """
from pytorch_metric_learning import losses, miners, samplers
from pytorch_metric_learning import distances, reducers
import torch

loss_func = losses.TripletMarginLoss(
    distance=distances.CosineSimilarity(), reducer=reducers.ThresholdReducer(low=0)
)
miner = miners.MultiSimilarityMiner(epsilon=0.2)
x, y = torch.randn(16, 8, requires_grad=True), torch.arange(4).repeat(4)
loss_func(x, y, miner(x, y)).backward()
sampler = samplers.MPerClassSampler(y, m=2, length_before_new_iter=16)
print("ok")
"""


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_a_pml_script_runs_with_the_import_line_swapped():
    script = PML_SCRIPT.replace(
        "from pytorch_metric_learning import losses, miners, samplers",
        "from pml_htl import losses, miners, samplers",
    )
    assert "from pml_htl import losses" in script
    done = run_python(script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ok")


def test_import_pml_htl_loads_neither_matplotlib_nor_faiss_nor_the_benchmark():
    done = run_python(
        "import sys, pml_htl\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('matplotlib', 'faiss', 'fontTools', 'benchmarks', 'sklearn')))"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_import_pml_htl_registers_no_module_under_another_name():
    """No pml_htl name in sys.modules holds another module, and no PML module is
    registered under a name other than its own."""
    done = run_python(
        "import sys\n"
        "import pml_htl\n"
        "from pml_htl import losses, miners, samplers, tree, tree_hooks\n"
        "samplers.MPerClassSampler  # PML's samplers, imported on first use\n"
        "ours = ('pml_htl', 'pytorch_metric_learning')\n"
        "print(sorted(k for k, m in list(sys.modules.items()) if m is not None and "
        "(k.split('.')[0] in ours or getattr(m, '__name__', '').split('.')[0] in ours) "
        "and getattr(m, '__name__', k) != k))"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_pml_htl_has_no_hooks_attribute_that_shadows_pml_idiom():
    """``hooks = logging_presets.get_hook_container(...)`` next to
    ``from pml_htl import *`` must not meet a pml_htl ``hooks``."""
    assert "hooks" not in pml_htl.__all__


def test_no_test_file_imports_another_test_file():
    """Shared data and references live in tests/helpers.py, so a test file can be
    read, run and deleted on its own."""
    offenders = []
    for path in sorted(Path(__file__).parent.rglob("*.py")):
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
