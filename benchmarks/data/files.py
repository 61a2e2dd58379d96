"""Checks of a data set's local folder (nothing is ever downloaded)."""

from __future__ import annotations

import os
from typing import List, Optional

from benchmarks.data.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def require_root(data_root: Optional[str], name: str, layout: str, *relative: str) -> str:
    """``data_root``, when it is a folder holding every path in ``relative``; else a
    DataError that names the expected ``layout`` of data set ``name``."""
    if not data_root:
        raise DataError(f"--data-root is required for --dataset {name}; expected {layout}")
    if not os.path.isdir(data_root):
        raise DataError(
            f"--data-root {data_root!r} does not exist; expected {layout} (nothing is downloaded)"
        )
    for rel in relative:
        if not os.path.exists(os.path.join(data_root, rel)):
            raise DataError(
                f"--data-root {data_root!r} has no {rel!r}; expected {layout} "
                "(nothing is downloaded)"
            )
    return data_root


def image_files(folder: str) -> List[str]:
    """The image files of ``folder`` (by extension), sorted by name."""
    return sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))
