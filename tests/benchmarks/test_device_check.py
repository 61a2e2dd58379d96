"""benchmarks/device_check.sh on the CPU (--dry-run, tiny steps) and the report it writes.

The real check needs a CUDA GPU; these runs check that the script runs its
steps under their time limits, records failures and time-outs, and always
writes a well-formed report where --out says (never docs/perf_cuda.md).
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import device_report

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "device_check.sh"
REPO_REPORT = ROOT / "docs" / "perf_cuda.md"

needs_tools = pytest.mark.skipif(
    shutil.which("bash") is None or shutil.which("timeout") is None,
    reason="needs bash and GNU timeout",
)


def run_script(tmp_path, *args, **settings):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PML_HTL_CHECK_")}
    env.update(PML_HTL_PYTHON=sys.executable, TMPDIR=str(tmp_path), **settings)
    before = REPO_REPORT.stat().st_mtime_ns if REPO_REPORT.exists() else None
    done = subprocess.run(
        ["bash", str(SCRIPT), *args],
        cwd=tmp_path,  # --out relative to the caller's directory
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    after = REPO_REPORT.stat().st_mtime_ns if REPO_REPORT.exists() else None
    assert before == after, "the dry run touched docs/perf_cuda.md"
    return done


def step_rows(report: str):
    """{step: (exit status, wall s, limit s)} from the report's table of steps."""
    rows = {}
    for line in report.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0] in ("environment", "tests", "perf", "compare"):
            rows[cells[0]] = (cells[2], cells[3], cells[4])
    return rows


@needs_tools
def test_dry_run_writes_the_report(tmp_path):
    done = run_script(
        tmp_path,
        "--dry-run",
        "--out",
        "sub/report.md",
        PML_HTL_CHECK_PYTEST_ARGS="-q -x tests/benchmarks/test_faiss_device.py -k gpu_count",
        PML_HTL_CHECK_TIMEOUT_ENVIRONMENT="60",  # imports torch: slow on a busy CPU
        # perf.py --quick and compare.py take minutes on a CPU: cut them short,
        # which also exercises the time limits
        PML_HTL_CHECK_TIMEOUT_PERF="2",
        PML_HTL_CHECK_TIMEOUT_COMPARE="2",
    )
    assert done.returncode == 1, done.stdout + done.stderr  # two steps timed out
    report = (tmp_path / "sub" / "report.md").read_text()
    assert report.startswith("# Device check: DRY RUN on the CPU")
    rows = step_rows(report)
    assert rows["environment"][0] == "0 (passed)"
    assert rows["tests"][0] == "0 (passed)"
    assert rows["perf"] == (rows["perf"][0], rows["perf"][1], "2")
    assert rows["perf"][0] in ("124 (timed out)", "137 (timed out)")
    assert rows["compare"][0] in ("124 (timed out)", "137 (timed out)")
    for step, (_, seconds, limit) in rows.items():
        assert 0 <= float(seconds) <= float(limit) + 6, step  # + timeout's kill delay
    assert "| torch | " + torch.__version__ + " |" in report
    assert "| pytorch-metric-learning | " in report and "| faiss | " in report
    assert re.search(r"^`1 passed, \d+ deselected in [\d.]+s`$", report, re.M)
    assert "No table: the step did not finish." in report
    assert "No run finished." in report
    assert "Result: NOT every step passed." in report
    assert re.search(r"^perf(: no output\.| \(last 25 lines\):)$", report, re.M)
    assert "commit " in report and " UTC" in report


@needs_tools
def test_no_time_left_still_writes_the_report(tmp_path):
    done = run_script(tmp_path, "--dry-run", "--out", "r.md", PML_HTL_CHECK_BUDGET="0")
    assert done.returncode == 1
    report = (tmp_path / "r.md").read_text()
    rows = step_rows(report)
    assert set(rows) == {"environment", "tests", "perf", "compare"}
    assert all(status == "not run (no time left)" for status, _, _ in rows.values())
    assert "| (not recorded) |" in report


@needs_tools
@pytest.mark.parametrize(
    "args, settings, message",
    [
        (["--nonsense"], {}, "unknown argument --nonsense"),
        (["--out"], {}, "--out needs a path"),
        ([], {"PML_HTL_CHECK_TIMEOUT_PERF": "soon"}, "whole number of seconds"),
        ([], {"PML_HTL_CHECK_TIMEOUT_TEST": "10"}, "unknown setting PML_HTL_CHECK_TIMEOUT_TEST"),
    ],
)
def test_bad_arguments(tmp_path, args, settings, message):
    # a budget of 0 s: nothing would run even if the arguments were accepted
    done = run_script(tmp_path, "--dry-run", *args, PML_HTL_CHECK_BUDGET="0", **settings)
    assert done.returncode == 2
    assert message in done.stderr


# ------------------------------------------------------------ the report from logs
PYTEST_FAILED = """\
..F
FAILED tests/test_x.py::test_y - AssertionError
!!!!!!!!!!!!!!!!!!!!!!!!!! stopping after 1 failures !!!!!!!!!!!!!!!!!!!!!!!!!!!
1 failed, 2 passed, 1 skipped in 3.21s
"""
COMPARE_LOG = """\
data: glyphs (224 train / 225 test character classes, 24 renderings each, 32x32); device: x
triplet seed 0: epoch 1/3, 4.1 s, R@1 7.4
triplet seed 0: R@1 7.4 in 64 s
htl seed 0: R@1 7.1 in 92 s
# glyphs: final accuracy after 120 iterations

| loss | R@1 |
|---|---|
| Triplet | **7.4** |

## The learned tree against the data set's superclasses

| loss | dendrogram purity |
|---|---|
"""


def test_log_parsers():
    assert device_report.pytest_summary(PYTEST_FAILED) == "1 failed, 2 passed, 1 skipped in 3.21s"
    assert device_report.pytest_summary("==== 5 passed in 0.12s ====\n") == "5 passed in 0.12s"
    assert device_report.pytest_summary("collecting ...\n") is None
    assert device_report.compare_summary(COMPARE_LOG) == [
        "triplet seed 0: R@1 7.4 in 64 s",
        "htl seed 0: R@1 7.1 in 92 s",
        "",
        "| loss | R@1 |",
        "|---|---|",
        "| Triplet | **7.4** |",
    ]
    assert device_report.describe_status("0") == "0 (passed)"
    assert device_report.describe_status("124") == "124 (timed out)"
    assert device_report.describe_status("4") == "4 (failed)"


def test_render_a_failed_run(tmp_path):
    steps = [
        ("environment", "0", "3.0", "30", "python -m benchmarks.device_report environment x"),
        ("tests", "1", "50.2", "160", "env PML_HTL_TEST_DEVICE=cuda python -m pytest -q -x tests/"),
        ("perf", "0", "80.0", "140", "python -m benchmarks.perf --device cuda --quick"),
        ("compare", "124", "130.0", "130", "python -m benchmarks.compare --quick --device cuda"),
    ]
    (tmp_path / "steps.tsv").write_text("".join("\t".join(s) + "\n" for s in steps))
    (tmp_path / "env.json").write_text(json.dumps({"nvidia-smi": "NVIDIA H200, 580.1, 1 MiB"}))
    (tmp_path / "tests.log").write_text(PYTEST_FAILED)
    (tmp_path / "perf.log").write_text("torch 2.11\n")
    (tmp_path / "perf.md").write_text("| comparison | ours (s) |\n|---|---|\n| loss | 0.1 |\n")
    (tmp_path / "compare.log").write_text("\n".join(COMPARE_LOG.splitlines()[:3]) + "\n")
    report = device_report.render(str(tmp_path), dry_run=False)
    assert report.startswith("# Device check on CUDA\n")
    assert "| nvidia-smi | NVIDIA H200, 580.1, 1 MiB |" in report
    rows = step_rows(report)
    assert rows == {
        "environment": ("0 (passed)", "3.0", "30"),
        "tests": ("1 (failed)", "50.2", "160"),
        "perf": ("0 (passed)", "80.0", "140"),
        "compare": ("124 (timed out)", "130.0", "130"),
    }
    assert "`1 failed, 2 passed, 1 skipped in 3.21s`" in report
    assert "| loss | 0.1 |" in report
    assert "triplet seed 0: R@1 7.4 in 64 s" in report
    # the failed steps' output, the passed ones' not
    tail = report.split("## Output of the steps that did not pass")[1]
    assert "tests (last 25 lines):" in tail and "compare (last 25 lines):" in tail
    assert "perf (last" not in tail and "environment (last" not in tail
    assert "FAILED tests/test_x.py::test_y" in tail
