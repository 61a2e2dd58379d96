"""The package's logger and its warning for pieces wired together wrongly.

Like PML's ``c_f.LOGGER`` (named "PML"), pml_htl logs to the logger named
"pml_htl": INFO lines for every class tree it builds. Configure it with the
standard ``logging`` module, e.g. ``logging.basicConfig(level=logging.INFO)``.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Optional

LOGGER = logging.getLogger("pml_htl")


class WiringWarning(UserWarning):
    """HTL's pieces are connected so that training runs, but not as HTL intends
    (e.g. a loss that never receives a tree). Each object warns once."""


def warn_once(owner: object, key: str, message: str) -> None:
    """Warn with ``message`` the first time ``owner`` hits ``key``."""
    seen = owner.__dict__.setdefault("_wiring_warned", set())
    if key in seen:
        return
    seen.add(key)
    warnings.warn(message, WiringWarning, stacklevel=3)


def show_progress(progress: Optional[bool] = None) -> bool:
    """Whether to draw a progress bar: as asked, else only when stderr is a
    terminal and ``TQDM_DISABLE`` is not set (log files get no bar frames)."""
    if progress is not None:
        return bool(progress)
    if os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false"):
        return False
    return sys.stderr.isatty()
