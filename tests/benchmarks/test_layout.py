"""The benchmark's shape: its import graph, read from the source, has no cycle and
points down the layers (function-local imports included); it depends on pml_htl
only through the names the library keeps; nothing edits sys.path; and its scripts
run as modules from the repository root only."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import imports_of

import benchmarks

PACKAGE_DIR = Path(benchmarks.__file__).parent
ROOT = PACKAGE_DIR.parent

#: From the bottom up: a module imports modules of its own layer or of the layers
#: below it. The configuration sits above the data set, backbone and loss tables
#: because it reads from them which settings each data set and backbone takes.
LAYERS = [
    (
        "foundations",
        (
            "benchmarks.pml_compat",
            "benchmarks.console",
            "benchmarks.environment",
            "benchmarks.atomic_files",
        ),
    ),
    (
        "tables and pure functions",
        ("benchmarks.variants", "benchmarks.data", "benchmarks.models", "benchmarks.stats"),
    ),
    ("configuration", ("benchmarks.config",)),
    ("frozen features", ("benchmarks.features",)),
    ("evaluation", ("benchmarks.evaluation", "benchmarks.diagnostics")),
    ("training", ("benchmarks.training",)),
    ("search and reports", ("benchmarks.tune", "benchmarks.report")),
    ("runner", ("benchmarks.runner",)),
    (
        "entry points",
        ("benchmarks.cli", "benchmarks.compare", "benchmarks.perf", "benchmarks.device_report"),
    ),
]
#: What the benchmark may import from pml_htl (the names the library keeps).
PML_HTL_MODULES = {
    "pml_htl",
    "pml_htl.losses",
    "pml_htl.miners",
    "pml_htl.samplers",
    "pml_htl.tree",
    "pml_htl.tree_hooks",
    "pml_htl._hinge",
    "pml_htl._logging",
}
PML_HTL_NAMES = {
    "HierarchicalClassTree",
    "HierarchicalTripletLoss",
    "TreeRebuildHook",
    "hinge_terms",
    "show_progress",
    "losses",
    "miners",
    "samplers",
    "tree_hooks",
}
#: perf.py measures the library's own pieces (statistics, schedule) against baselines.
MEASURES_THE_LIBRARY = {"benchmarks.perf"}


def module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_package else parts), is_package


def is_module(dotted):
    path = ROOT / dotted.replace(".", "/")
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def internal_imports():
    """{module: set of benchmarks modules it imports}."""
    graph = {}
    for path in PACKAGE_DIR.rglob("*.py"):
        name, _ = module_name(path)
        targets = set()
        for stem, names in imports_of(path, ROOT):
            if stem.split(".")[0] != "benchmarks":
                continue
            # "from benchmarks.stats import paired" imports the module paired;
            # "from benchmarks.data import DataError" the package's own name
            for n in names or [None]:
                full = f"{stem}.{n}"
                targets.add(full if n is not None and is_module(full) else stem)
        graph[name] = targets - {name}
    return graph


def layer_of(module):
    for index, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    raise AssertionError(f"{module} is in no layer of test_layout.LAYERS")


def test_the_reader_finds_the_modules_and_their_local_imports():
    graph = internal_imports()
    assert "benchmarks.training.run" in graph and "benchmarks.data.cub" in graph
    assert "benchmarks.runner" in graph["benchmarks.compare"]
    # a function-local import: build_sampler imports pml_htl's samplers inside it
    parts = PACKAGE_DIR / "training" / "parts.py"
    assert ("pml_htl", ["samplers"]) in imports_of(parts, ROOT)


def test_benchmark_imports_have_no_cycle():
    graph = internal_imports()
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                raise AssertionError(" -> ".join(stack + [node, nxt]))
            if nxt not in state:
                visit(nxt, stack + [node])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


def test_every_import_points_down_the_layers():
    upward = []
    for module, targets in sorted(internal_imports().items()):
        if module == "benchmarks":
            continue
        for target in sorted(targets):
            if target != "benchmarks" and layer_of(target) > layer_of(module):
                upward.append(f"{module} ({LAYERS[layer_of(module)][0]}) imports {target}")
    assert not upward, upward


def test_a_data_set_module_imports_no_other_data_set():
    data_sets = {"cub", "cars196", "sop", "inshop", "folder", "fashion_mnist", "faces"}
    graph = internal_imports()
    for name in data_sets:
        module = f"benchmarks.data.{name}"
        others = {t for t in graph[module] if t.rsplit(".", 1)[-1] in data_sets - {name}}
        assert not others, f"{module} imports {others}"
        assert "benchmarks.data" not in graph[module]  # the registry imports the data sets


def test_pml_htl_is_used_through_the_names_it_keeps():
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        module, _ = module_name(path)
        if module in MEASURES_THE_LIBRARY:
            continue
        for stem, names in imports_of(path, ROOT):
            if stem.split(".")[0] != "pml_htl":
                continue
            assert stem in PML_HTL_MODULES, f"{module} imports {stem}"
            if stem == "pml_htl":
                assert set(names) <= PML_HTL_NAMES, f"{module} imports {names} from pml_htl"


def sys_path_edits(path):
    """Lines that change sys.path: sys.path.insert/append/extend/remove, or an
    assignment to sys.path."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        target = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            target = node.func.value
        elif isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            target = next(
                (t for t in targets if isinstance(t, (ast.Attribute, ast.Subscript))), None
            )
            target = target.value if isinstance(target, ast.Subscript) else target
        if (
            isinstance(target, ast.Attribute)
            and target.attr == "path"
            and isinstance(target.value, ast.Name)
            and target.value.id == "sys"
        ):
            lines.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return lines


def test_nothing_edits_sys_path():
    edits = []
    for folder in ("benchmarks", "tests"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            edits += sys_path_edits(path)
    assert not edits, edits


@pytest.mark.parametrize("script", ["compare", "perf", "device_report"])
def test_a_script_run_as_a_file_says_how_to_run_it(script):
    done = subprocess.run(
        [sys.executable, f"benchmarks/{script}.py", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        "error: run the benchmark as a module from the repository root: "
        f"python -m benchmarks.{script} ...\n"
    )
