"""Where reading a tensor's values on the host stalls its device.

On CUDA every value the host reads back (``.item()``, ``bool(t)``, ``int(t)``,
``.tolist()``, ``torch.nonzero``, ``torch.unique``, boolean-mask indexing,
``repeat_interleave`` without ``output_size``) waits for every queued kernel:
a host-device synchronisation that empties the GPU's queue in each training
step. On the CPU it costs nothing. The loss and the miner ask
`syncs_are_costly` which algorithm to run, and check values with
device-side asserts where `device_side_checks` says so.

Depends on torch only.
"""

from __future__ import annotations

import os

import torch

#: Set to 1 to check values eagerly on CUDA too: a ValueError naming the
#: argument instead of a device-side assert, at the cost of a sync per check.
EAGER_CHECKS_ENV = "PML_HTL_EAGER_CHECKS"


def syncs_are_costly(device: torch.device) -> bool:
    """True where a read-back synchronises the host with the device (CUDA), and
    while torch.compile traces (a read-back is a graph break there)."""
    return device.type == "cuda" or torch.compiler.is_compiling()


def device_side_checks(device: torch.device) -> bool:
    """True where the per-call value checks of the loss and the miner run as
    asynchronous device-side asserts: on CUDA, unless PML_HTL_EAGER_CHECKS=1, and
    while torch.compile traces."""
    if torch.compiler.is_compiling():
        return True
    return syncs_are_costly(device) and os.environ.get(EAGER_CHECKS_ENV, "0").strip() != "1"
