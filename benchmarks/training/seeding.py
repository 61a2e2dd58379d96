"""The random number generators a run draws from: seeded at its start, and saved
and restored where a run continues from a shared warm start."""

from __future__ import annotations

import random
from typing import Any, Tuple

import numpy as np
import torch

#: (Python's, NumPy's, torch's CPU, torch's CUDA generators' states)
RngState = Tuple[Any, Any, torch.Tensor, Any]


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> RngState:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    return random.getstate(), np.random.get_state(), torch.get_rng_state(), cuda


def restore_rng(state: RngState) -> None:
    python, numpy, cpu, cuda = state
    random.setstate(python)
    np.random.set_state(numpy)
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)
