"""Every script in examples/ runs with --smoke, as a user would start it.

Each run is a subprocess whose output goes to a pipe (not a terminal), so the
scripts must not draw progress bars. They demonstrate correct wiring, so no
``pml_htl.WiringWarning`` may appear. (``python -W error::pml_htl.WiringWarning``
cannot check that: Python reads -W before site-packages is on sys.path, cannot
import pml_htl's torch then, and ignores the option. Python prints every
warning with its category's name, so the output is searched for it instead.)

The runs start together, two at a time, one thread each: on two cores the file
takes about half as long as running them one after the other.
"""

import os
import re
import signal
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import pml_htl

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
TIMEOUT_S = 300

# name: (arguments of the interpreter, tree rebuilds expected), longest first
RUNS = {
    "distributed_torchrun_2_processes": (
        ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
        + [str(EXAMPLES / "distributed_torchrun.py"), "--smoke"],
        2,
    ),
    "train_with_pml_trainer": ([str(EXAMPLES / "train_with_pml_trainer.py"), "--smoke"], 3),
    "hand_written_loop": ([str(EXAMPLES / "hand_written_loop.py"), "--smoke"], 2),
    "cross_batch_memory": ([str(EXAMPLES / "cross_batch_memory.py"), "--smoke"], 2),
    "distributed_torchrun_plain_python": (
        [str(EXAMPLES / "distributed_torchrun.py"), "--smoke"],
        2,
    ),
}


def run_example(args, out_dir):
    """(return code, stdout and stderr together) of one run."""
    env = dict(os.environ)
    env.pop("TQDM_DISABLE", None)  # the scripts themselves must keep bars out of pipes
    env["OMP_NUM_THREADS"] = "1"  # two runs share two cores
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if "train_with_pml_trainer.py" in args[0]:
        args = args + ["--out", str(out_dir)]
    process = subprocess.Popen(
        [sys.executable] + args + ["--device", "cpu"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # a timeout ends torchrun's workers too
    )
    try:
        out, _ = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, _ = process.communicate()
        return None, out
    return process.returncode, out


@pytest.fixture(scope="module")
def started(request, tmp_path_factory):
    """Futures of the selected runs, started at once, two at a time."""
    selected = {
        item.callspec.params["name"]
        for item in request.session.items
        if getattr(item, "module", None) is sys.modules[__name__] and hasattr(item, "callspec")
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield {
            name: pool.submit(run_example, args, tmp_path_factory.mktemp(name))
            for name, (args, _) in RUNS.items()
            if name in selected
        }


@pytest.mark.parametrize("name", list(RUNS))
def test_example_runs_with_smoke(name, started):
    returncode, out = started[name].result()
    assert returncode == 0, f"return code {returncode} (None: timed out)\n{out}"
    assert "Traceback" not in out, out
    assert "WiringWarning" not in out, out
    assert "\r" not in out, "a progress bar was drawn into a pipe:\n" + out
    # the pml_htl logger's line per tree build (rank 0's only under torchrun)
    builds = re.findall(r"pml_htl: tree rebuild (\d+): embedded", out)
    assert builds == [str(i) for i in range(1, RUNS[name][1] + 1)], out
    recall = re.search(r"unseen classes\)[^:]*: R@1 (\d\.\d+), R@2", out)
    assert recall is not None, out
    assert float(recall.group(1)) > 0.5, out  # well-separated blobs: about 0.97
    if name.startswith("distributed"):
        world_size = 2 if name.endswith("2_processes") else 1
        assert f"world size {world_size}" in out, out
    if name == "train_with_pml_trainer":
        check_record_keeper_logs(out)


def check_record_keeper_logs(out):
    """With the hooks extra, record-keeper's CSV has HTL's stats (collect_stats=True);
    without it the script says so and still tests."""
    logs = re.search(r"record-keeper logs in (.+)", out)
    if logs is None:
        assert "record-keeper or tensorboard is not installed" in out, out
        return
    csv = Path(logs.group(1).strip()) / "csv" / "metric_loss_HierarchicalTripletLoss.csv"
    header = csv.read_text().splitlines()[0].split(",")
    assert {"num_triplets", "num_violating_triplets", "mean_margin"} <= set(header)


def test_the_output_check_would_see_a_wiring_warning():
    shown = warnings.formatwarning("message", pml_htl.WiringWarning, "example.py", 1)
    assert "WiringWarning" in shown
