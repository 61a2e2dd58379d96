"""The Markdown report of benchmarks/device_check.sh, from the logs of its steps.

    python -m benchmarks.device_report environment ENV.json
    python -m benchmarks.device_report render --work DIR --out REPORT.md [--dry-run]

``environment`` records the machine and the versions (torch and the rest are
imported inside it, so a broken install is a line in the report, not a
crash). ``render`` reads what device_check.sh left in DIR: ``steps.tsv`` (one
line per step: name, exit status, wall seconds, time limit, command),
``<step>.log`` (its output), ``env.json``, ``perf.md`` and ``started`` (the
check's start, in seconds since the epoch). It needs only the
standard library.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time
from typing import Dict, List, Optional

if not __package__:  # run as a file: benchmarks/ is then no package to import from
    sys.stderr.write(
        "error: run the benchmark as a module from the repository root: "
        "python -m benchmarks.device_report ...\n"
    )
    raise SystemExit(2)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Exit statuses of GNU timeout: the step ran past its limit.
TIMED_OUT = {124, 137}
#: pytest's last line: "3 failed, 120 passed, 4 skipped in 61.20s" (-q drops the ='s).
PYTEST_SUMMARY = re.compile(
    r"\b\d+ (passed|failed|errors?|skipped|deselected|xfailed|xpassed)\b.*\bin [\d.]+s"
)
#: compare.py's line per finished run: "htl seed 0: R@1 7.1 in 92 s".
COMPARE_RUN = re.compile(r"^\S+ seed \d+: R@1 \S+ in \d+ s$")
TAIL_LINES = 25


# --------------------------------------------------------------------- environment
def _run(cmd: List[str]) -> Optional[str]:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=ROOT)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _version(module: str) -> str:
    try:
        return getattr(__import__(module), "__version__", "installed")
    except Exception as e:  # a broken install is reported, not raised
        return f"not importable ({type(e).__name__}: {e})"


def environment() -> Dict[str, str]:
    """The machine and the versions, each as a string."""
    info = {"python": platform.python_version()}
    smi = _run(
        ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
    )
    info["nvidia-smi"] = smi or "not available"
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch CUDA"] = torch.version.cuda or "none (CPU build)"
        if torch.cuda.is_available():
            names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            info["torch GPUs"] = "; ".join(names)
        else:
            info["torch GPUs"] = "none (torch.cuda.is_available() is False)"
    except Exception as e:
        info["torch"] = f"not importable ({type(e).__name__}: {e})"
    info["pytorch-metric-learning"] = _version("pytorch_metric_learning")
    info["faiss"] = _version("faiss")
    if not info["faiss"].startswith("not importable"):
        try:
            from benchmarks.evaluation.faiss_device import faiss_gpu_count

            gpus = faiss_gpu_count()
            info["faiss"] += (
                f" (GPU build, {gpus} GPU(s) visible)" if gpus else " (CPU build, or no GPU)"
            )
        except Exception as e:
            info["faiss"] += f" (GPU support unknown: {type(e).__name__}: {e})"
    info["pml_htl"] = _version("pml_htl")
    return info


# --------------------------------------------------------------------- reading the logs
def read_steps(work: str) -> List[Dict[str, str]]:
    steps = []
    path = os.path.join(work, "steps.tsv")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                name, status, seconds, limit, command = line.rstrip("\n").split("\t", 4)
                steps.append(dict(name=name, status=status, seconds=seconds, limit=limit))
                steps[-1]["command"] = command
    return steps


def _read(path: str) -> Optional[str]:
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def describe_status(status: str) -> str:
    if not status.lstrip("-").isdigit():
        return status
    code = int(status)
    if code == 0:
        return "0 (passed)"
    return f"{code} (timed out)" if code in TIMED_OUT else f"{code} (failed)"


def passed(step: Dict[str, str]) -> bool:
    return step["status"] == "0"


def pytest_summary(log: str) -> Optional[str]:
    """pytest's final summary line, or None when it never printed one."""
    lines = [ln.strip(" =") for ln in log.splitlines() if PYTEST_SUMMARY.search(ln)]
    return lines[-1] if lines else None


def compare_summary(log: str) -> List[str]:
    """compare.py's line per finished run, then its accuracy table."""
    lines = log.splitlines()
    runs = [ln for ln in lines if COMPARE_RUN.match(ln)]
    table: List[str] = []
    for ln in lines:
        if ln.startswith("|"):
            table.append(ln)
        elif table:
            break  # the first table only: the accuracy table
    return runs + ([""] + table if table else [])


def tail(log: str, n: int = TAIL_LINES) -> str:
    return "\n".join(log.rstrip().splitlines()[-n:])


# --------------------------------------------------------------------- the report
def _commit() -> str:
    commit = _run(["git", "rev-parse", "--short=12", "HEAD"])
    if not commit:
        return "unknown (not a git checkout)"
    dirty = _run(["git", "status", "--porcelain", "--untracked-files=no"])
    return commit + (" with uncommitted changes" if dirty else "")


def _fenced(text: str) -> List[str]:
    return ["```", text.rstrip(), "```"]


def render(work: str, dry_run: bool) -> str:
    steps = read_steps(work)
    env_text = _read(os.path.join(work, "env.json"))
    env = json.loads(env_text) if env_text else {}
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    title = (
        "# Device check: DRY RUN on the CPU (tiny steps; not a GPU measurement)"
        if dry_run
        else "# Device check on CUDA"
    )
    out = [
        title,
        "",
        f"Written by `bash benchmarks/device_check.sh{' --dry-run' if dry_run else ''}` "
        f"on {now}, commit {_commit()}. Every number below was measured in this run, "
        "by the commands in the table of steps.",
        "",
        "## Machine and versions",
        "",
        "| what | value |",
        "|---|---|",
    ]
    if env:
        out += [f"| {k} | {str(v).replace('|', '/')} |" for k, v in env.items()]
    else:
        out.append("| (not recorded) | the environment step failed: see its output below |")
    out += [
        "",
        "## Steps",
        "",
        "| step | command | exit status | wall time (s) | time limit (s) |",
        "|---|---|---|---|---|",
    ]
    for s in steps:
        out.append(
            f"| {s['name']} | `{s['command']}` | {describe_status(s['status'])} | "
            f"{s['seconds']} | {s['limit']} |"
        )
    verdict = "every step passed" if steps and all(map(passed, steps)) else "NOT every step passed"
    started = _read(os.path.join(work, "started"))
    total = (
        f" Wall time of the whole check: {time.time() - float(started):.0f} s." if started else ""
    )
    out += ["", f"Result: {verdict}.{total}", ""]

    # None: the step never ran (no time left)
    logs = {s["name"]: _read(os.path.join(work, s["name"] + ".log")) for s in steps}
    if "tests" in logs:
        line = pytest_summary(logs["tests"] or "")
        out += ["## Tests", "", f"`{line}`" if line else "pytest printed no summary line.", ""]
    if "perf" in logs:
        table = _read(os.path.join(work, "perf.md"))
        out += ["## benchmarks/perf.py", ""]
        out += [table.rstrip(), ""] if table else ["No table: the step did not finish.", ""]
    if "compare" in logs:
        lines = compare_summary(logs["compare"] or "")
        out += ["## benchmarks/compare.py", ""]
        out += lines + [""] if lines else ["No run finished.", ""]
    failed = [s for s in steps if not passed(s) and logs[s["name"]] is not None]
    if failed:
        out += ["## Output of the steps that did not pass", ""]
        for s in failed:
            log = logs[s["name"]]
            if log.strip():
                out += [f"{s['name']} (last {TAIL_LINES} lines):", ""]
                out += _fenced(tail(log)) + [""]
            else:
                out += [f"{s['name']}: no output.", ""]
    return "\n".join(out).rstrip() + "\n"


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("environment", help="record the machine and the versions as JSON")
    e.add_argument("out")
    r = sub.add_parser("render", help="write the Markdown report")
    r.add_argument("--work", required=True, help="the folder device_check.sh wrote its logs to")
    r.add_argument("--out", required=True)
    r.add_argument("--dry-run", action="store_true")
    args = p.parse_args(argv)
    if args.command == "environment":
        info = environment()
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(info, f, indent=1)
        print("\n".join(f"{k}: {v}" for k, v in info.items()))
        return
    text = render(args.work, args.dry_run)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
