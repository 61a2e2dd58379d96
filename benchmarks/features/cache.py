"""Feature cache files: one per (trunk, weights, data split, transform, image size,
view), named by a digest of that key and holding it, written atomically.

Default folder: beside the glyph cache, ``$PML_HTL_CACHE/features``, else
``$XDG_CACHE_HOME/pml_htl/features``, else ``~/.cache/pml_htl/features``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from typing import Any, Dict, Optional, Tuple

import torch

from benchmarks.atomic_files import atomic_write
from benchmarks.data.glyphs.files import default_cache_dir as glyph_cache_dir

#: Bump whenever a change alters the features cached for the same key.
FEATURES_VERSION = "1"

FeatureKey = Dict[str, Any]


def default_cache_dir() -> str:
    """The folder beside the glyph cache: ``<cache>/pml_htl/features``."""
    return os.path.join(os.path.dirname(glyph_cache_dir()), "features")


def key_text(key: FeatureKey) -> str:
    return json.dumps(key, sort_keys=True)


def cache_path(key: FeatureKey, folder: Optional[str] = None) -> str:
    """Where the features of ``key`` are cached: the trunk, the split and the view in
    the name (for people), a digest of the whole key (for the program)."""
    digest = hashlib.sha256(key_text(key).encode()).hexdigest()[:16]
    view = key["view"] if isinstance(key["view"], str) else f"view{key['view']['augmented']}"
    name = f"{key['trunk']['backbone']}-{key['data']['split']}-{view}-{digest}.pt"
    return os.path.join(folder or default_cache_dir(), name)


def read(path: str, key: FeatureKey) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """(features, labels) of a cache file made for ``key``; None when it is absent,
    unreadable or made for another key."""
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # absent, corrupt or foreign file: a miss
        return None
    if not isinstance(stored, dict) or stored.get("key") != key_text(key):
        return None
    return stored["features"], stored["labels"]


def write(path: str, key: FeatureKey, features: torch.Tensor, labels: torch.Tensor) -> None:
    """Write the cache file atomically (readers never see a partial file)."""
    buf = io.BytesIO()
    torch.save({"key": key_text(key), "features": features, "labels": labels}, buf)
    atomic_write(path, buf.getvalue(), shared=True)
