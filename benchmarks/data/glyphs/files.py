"""Where glyph builds live: the font files, the cache key and the cache files.

Shared by :mod:`~benchmarks.data.glyphs.dataset` (which reads builds) and
:mod:`~benchmarks.data.glyphs.generator` (which makes them); it imports
neither. Cache: one ``.npz`` per build in ``$PML_HTL_CACHE/glyphs`` (default
``~/.cache/pml_htl/glyphs``), keyed by the build parameters,
:data:`GLYPHS_VERSION`, the font files and the versions of FreeType, Pillow,
NumPy and SciPy.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from typing import Dict, List, Optional, Tuple

import numpy as np

from benchmarks.atomic_files import atomic_write

#: Bump whenever a change to the generator alters the arrays (invalidates caches).
GLYPHS_VERSION = "1"

#: The usable text fonts of matplotlib's wheel, in font index order. Left out:
#: LastResortHE (placeholders only), cmex10, STIXSiz*, STIXNonUni* (symbols
#: or private-use code points), cmsy10 (calligraphic capitals only) and
#: DejaVu*Display (a few large operators).
FONT_FILES = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
    "STIXGeneralBolIta.ttf",
    "cmr10.ttf",
    "cmb10.ttf",
    "cmss10.ttf",
    "cmti10.ttf",
    "cmtt10.ttf",
    "cmmi10.ttf",
)


# --------------------------------------------------------------------------
# The build's identity: parameters, fonts, renderer versions


def _needs_glyphs_extra(error: ImportError) -> ImportError:
    """The ImportError for a missing dependency of the generator."""
    name = (error.name or str(error)).split(".")[0]
    return ImportError(
        f"building the glyph data set needs {name} (the 'glyphs' extra): "
        "pip install 'pml_htl[glyphs]'",
        name=name,
    )


def _font_dir() -> str:
    try:
        import matplotlib
    except ImportError as e:
        raise _needs_glyphs_extra(e) from e
    return os.path.join(matplotlib.get_data_path(), "fonts", "ttf")


def _font_paths() -> List[str]:
    d = _font_dir()
    missing = [f for f in FONT_FILES if not os.path.exists(os.path.join(d, f))]
    if missing:
        raise FileNotFoundError(
            f"matplotlib's font folder {d} lacks {missing}; the glyph data set "
            "needs matplotlib's bundled DejaVu, STIX and Computer Modern fonts"
        )
    return [os.path.join(d, f) for f in FONT_FILES]


def _check_params(samples_per_class, image_size, seed, num_classes):
    if not (isinstance(samples_per_class, int) and samples_per_class > 0):
        raise ValueError(f"samples_per_class must be a positive int, got {samples_per_class!r}")
    if not (isinstance(image_size, int) and image_size >= 8):
        raise ValueError(f"image_size must be an int >= 8, got {image_size!r}")
    if not (isinstance(seed, int) and seed >= 0):
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if num_classes is not None and not (isinstance(num_classes, int) and num_classes >= 2):
        raise ValueError(f"num_classes must be None or an int >= 2, got {num_classes!r}")


def _build_params(samples_per_class, image_size, seed, num_classes) -> dict:
    return {
        "version": GLYPHS_VERSION,
        "samples_per_class": samples_per_class,
        "image_size": image_size,
        "seed": seed,
        "num_classes": num_classes,
    }


def _cache_key(samples_per_class, image_size, seed, num_classes) -> dict:
    """The build parameters and the installation that renders them; raises
    ImportError (naming the ``glyphs`` extra) when that is not installed."""
    try:
        import PIL
        import scipy
        from PIL import features
    except ImportError as e:
        raise _needs_glyphs_extra(e) from e
    return {
        **_build_params(samples_per_class, image_size, seed, num_classes),
        "fonts": [[os.path.basename(p), os.path.getsize(p)] for p in _font_paths()],
        "freetype": features.version("freetype2"),
        "pillow": PIL.__version__,
        "numpy": np.__version__.rsplit(".", 1)[0],
        "scipy": scipy.__version__.rsplit(".", 1)[0],
    }


# --------------------------------------------------------------------------
# The cache


def default_cache_dir() -> str:
    """``$PML_HTL_CACHE/glyphs``, else ``$XDG_CACHE_HOME/pml_htl/glyphs``, else
    ``~/.cache/pml_htl/glyphs``."""
    base = os.environ.get("PML_HTL_CACHE")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        base = os.path.join(xdg, "pml_htl")
    return os.path.join(base, "glyphs")


def _file_prefix(samples_per_class, image_size, seed, num_classes) -> str:
    return (
        f"glyphs-v{GLYPHS_VERSION}-n{num_classes or 'all'}-s{samples_per_class}"
        f"-i{image_size}-seed{seed}-"
    )


def cache_path(
    root: Optional[str] = None,
    samples_per_class: int = 40,
    image_size: int = 32,
    seed: int = 0,
    num_classes: Optional[int] = None,
) -> str:
    """Where :func:`load_glyph_arrays` keeps the arrays for these parameters."""
    key = _cache_key(samples_per_class, image_size, seed, num_classes)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    name = _file_prefix(samples_per_class, image_size, seed, num_classes) + f"{digest[:12]}.npz"
    return os.path.join(root or default_cache_dir(), name)


def _read(path: str) -> Optional[Tuple[str, Dict[str, np.ndarray]]]:
    """(stored key, arrays) of a cache file; None when absent or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        return str(arrays.pop("_key")), arrays
    except Exception:  # absent, corrupt or foreign file
        return None


def _read_any_build(
    root: Optional[str], samples_per_class, image_size, seed, num_classes
) -> Optional[Tuple[Dict[str, np.ndarray], str]]:
    """The newest cached build with these parameters, whatever installation
    made it: used when the generator's dependencies, and so the full key,
    are missing."""
    folder = root or default_cache_dir()
    prefix = _file_prefix(samples_per_class, image_size, seed, num_classes)
    want = _build_params(samples_per_class, image_size, seed, num_classes)
    try:
        names = [n for n in os.listdir(folder) if n.startswith(prefix) and n.endswith(".npz")]
    except OSError:
        return None
    paths = sorted((os.path.join(folder, n) for n in names), key=os.path.getmtime, reverse=True)
    for path in paths:
        found = _read(path)
        if found is None:
            continue
        key, arrays = found
        try:
            stored = json.loads(key)
        except ValueError:
            continue
        if all(stored.get(k) == v for k, v in want.items()):
            return arrays, path
    return None


def _write(path: str, key: str, arrays: Dict[str, np.ndarray]) -> None:
    """Write the cache file atomically (readers never see a partial file)."""
    buf = io.BytesIO()
    np.savez_compressed(buf, _key=np.array(key), **arrays)
    atomic_write(path, buf.getvalue(), shared=True)
