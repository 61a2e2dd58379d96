"""Where a run was made: the code's commit, the package versions, the device."""

from __future__ import annotations

import os
import platform
import subprocess
from typing import Dict, Optional

import numpy as np
import torch

from benchmarks.pml_compat import pml_version

#: The repository this benchmark is part of.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def git_commit() -> Optional[str]:
    """HEAD's commit, "-dirty" when tracked files changed; None outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return (commit + ("-dirty" if dirty else "")) or None
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> Dict[str, Optional[str]]:
    import pml_htl

    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pytorch_metric_learning": pml_version(),
        "pml_htl": pml_htl.__version__,
        "numpy": np.__version__,
    }
    for name in ("faiss", "torchvision", "record_keeper"):
        try:
            module = __import__(name)
            versions[name] = getattr(module, "__version__", "installed")
        except ImportError:
            versions[name] = None
    return versions


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
