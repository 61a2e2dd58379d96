"""Files written whole or not at all: a temporary file beside the target, then a
rename, so a reader (or a resumed comparison) never sees half a file."""

from __future__ import annotations

import os
import tempfile
from typing import Union


def atomic_write(path: str, data: Union[str, bytes], *, shared: bool = False) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` atomically.

    ``shared``: a cache file other processes read. It is flushed to disk before the
    rename and gets the permissions the umask gives a new file, where mkstemp's
    would be private to this user.
    """
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    if isinstance(data, str):
        data = data.encode("utf-8")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if shared:
                f.flush()
                os.fsync(f.fileno())
        if shared:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
