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


#: Frames in these packages are skipped, so a warning points at the user's line.
_LIBRARY_DIRS = tuple(
    os.path.dirname(os.path.abspath(m.__file__)) + os.sep
    for m in (sys.modules[__name__.rpartition(".")[0]], warnings)
)


def _user_stacklevel() -> int:
    """The stacklevel of the innermost frame outside pml_htl, torch and PML."""
    frame, level = sys._getframe(1), 1
    while frame is not None:
        path = os.path.abspath(frame.f_code.co_filename)
        if not path.startswith(_LIBRARY_DIRS) and not _in_a_library(path):
            return level
        frame, level = frame.f_back, level + 1
    return 2


def _in_a_library(path: str) -> bool:
    parts = path.split(os.sep)
    return any(p in ("torch", "pytorch_metric_learning") for p in parts) or "<frozen" in path


def warn_once(owner: object, key: str, message: str) -> None:
    """Warn with ``message`` the first time ``owner`` hits ``key``, pointing at
    the user's code that led there."""
    seen = owner.__dict__.setdefault("_wiring_warned", set())
    if key in seen:
        return
    seen.add(key)
    warnings.warn(message, WiringWarning, stacklevel=_user_stacklevel())


def show_progress(progress: Optional[bool] = None) -> bool:
    """Whether to draw a progress bar: as asked, else only when stderr is a
    terminal and ``TQDM_DISABLE`` is not set (log files get no bar frames)."""
    if progress is not None:
        return bool(progress)
    if os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false"):
        return False
    return sys.stderr.isatty()
