"""GlyphDataset: the glyph data set as a torch ``Dataset``, read from its cache.

The data set is characters of seven scripts drawn in the fonts inside
matplotlib's wheel, with the script as superclass; how it is generated is
:mod:`pml_htl.datasets.glyph_generator`'s business. This module finds a
build in the cache and loads it, and imports the generator only on a cache
miss, so reading a cached build needs only NumPy and torch; building one
needs the ``glyphs`` extra (matplotlib, fontTools, Pillow, SciPy).

Cache: one ``.npz`` per build in ``$PML_HTL_CACHE/glyphs`` (default
``~/.cache/pml_htl/glyphs``), keyed by the build parameters,
:data:`GLYPHS_VERSION`, the font files and the versions of FreeType, Pillow,
NumPy and SciPy. Without the extra (no full key, no build) the newest
cached build with the same parameters is read as it is.

Split: a class's global id is its position in the generator's canonical
(script-interleaved) order; the first half of the ids
(``0 .. num_classes//2 - 1``) is the training split and the rest the test
split, so every script appears on both sides and labels stay global ids.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

__all__ = [
    "FONT_FILES",
    "GLYPHS_VERSION",
    "GlyphDataset",
    "build_glyph_arrays",
    "cache_path",
    "default_cache_dir",
    "load_glyph_arrays",
]

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
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".glyphs-", suffix=".tmp", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "wb") as fh:
            buf = io.BytesIO()
            np.savez_compressed(buf, _key=np.array(key), **arrays)
            fh.write(buf.getvalue())
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def build_glyph_arrays(
    samples_per_class: int = 40,
    image_size: int = 32,
    seed: int = 0,
    num_classes: Optional[int] = None,
    verbose: bool = True,
) -> Dict[str, np.ndarray]:
    """Generate the arrays without the cache: imports the generator and calls
    :func:`pml_htl.datasets.glyph_generator.build_glyph_arrays`. Needs the
    ``glyphs`` extra."""
    from .glyph_generator import build_glyph_arrays as build

    return build(samples_per_class, image_size, seed, num_classes, verbose)


def load_glyph_arrays(
    root: Optional[str] = None,
    samples_per_class: int = 40,
    image_size: int = 32,
    seed: int = 0,
    num_classes: Optional[int] = None,
    verbose: bool = True,
) -> Tuple[Dict[str, np.ndarray], str]:
    """The arrays of :func:`build_glyph_arrays`, from the cache when present
    (built and written atomically otherwise). Returns (arrays, cache path).

    Without the ``glyphs`` extra (no full key, no build), the newest cached
    build with these parameters is returned, whichever installation made it;
    ImportError naming the extra when there is none."""
    _check_params(samples_per_class, image_size, seed, num_classes)
    params = (samples_per_class, image_size, seed, num_classes)
    try:
        key = json.dumps(_cache_key(*params), sort_keys=True)
        path = cache_path(root, *params)
        found = _read(path)
        if found is not None and found[0] == key:
            return found[1], path
        from . import glyph_generator  # noqa: F401  (a miss needs it: fail before building)
    except ImportError:
        found = _read_any_build(root, *params)
        if found is None:
            raise
        return found
    if verbose:
        print(f"Building the glyph data set (cached to {path})")
    arrays = build_glyph_arrays(*params, verbose)
    _write(path, key, arrays)
    return arrays, path


# --------------------------------------------------------------------------
# The torch data set


class GlyphDataset(torch.utils.data.Dataset):
    """Characters of several scripts drawn in matplotlib's fonts.

    Args:
        root: cache folder (default :func:`default_cache_dir`).
        split: ``"train"`` (first half of the classes), ``"test"`` (the rest)
            or ``"all"``.
        samples_per_class: images per class (fonts x augmentations).
        image_size: side of the square grayscale images (default 32).
        seed: seed of the augmentation; same seed, same bits.
        transform: applied to a ``PIL.Image`` (mode "L"); without it an item
            is a float tensor of shape (1, H, W) with values in [0, 1].
        target_transform: applied to the integer label.
        num_classes: keep only the first ``num_classes`` classes of the
            canonical order (default: all).
        verbose: progress bars while building.

    Items are ``(image, label)`` with white ink on black. Labels are the
    global class ids (the test split starts at ``num_train_classes``).

    Attributes:
        images: (N, H, W) uint8 of this split.
        labels: (N,) int64 global class ids.
        superclass_labels: (N,) int64 script ids (index into ``scripts``).
        font_ids: (N,) source font of each image (index into ``font_names``).
        class_names: the character of every global class id.
        class_scripts: (C,) script id of every global class id.
        scripts: the script names (superclass names).
        classes: the global class ids of this split.
        clean_images: (C, F, 32, 32) uint8 clean renderings of every class in
            every font (zeros where ``class_fonts`` is False).
        class_fonts: (C, F) which fonts render each class.
        font_names: the font of each font index (file name without .ttf).
        homoglyphs: (dropped character, representative character) pairs:
            look-alike classes collapsed into one.
        pruned_renderings: (character, font, look-alike) of the single
            renderings left out of kept classes.
        num_classes, num_train_classes: class counts (all splits; train).
        cache_path: the .npz the arrays come from.
    """

    def __init__(
        self,
        root: Optional[str] = None,
        split: str = "train",
        samples_per_class: int = 40,
        image_size: int = 32,
        seed: int = 0,
        transform=None,
        target_transform=None,
        num_classes: Optional[int] = None,
        verbose: bool = True,
    ):
        if split not in ("train", "test", "all"):
            raise ValueError(f'split must be "train", "test" or "all", got {split!r}')
        arrays, self.cache_path = load_glyph_arrays(
            root, samples_per_class, image_size, seed, num_classes, verbose
        )
        self.split = split
        self.transform = transform
        self.target_transform = target_transform
        codepoints = arrays["class_codepoints"]
        self.class_names = [chr(int(c)) for c in codepoints]
        self.class_scripts = arrays["class_scripts"].astype(np.int64)
        self.scripts = [str(s) for s in arrays["scripts"]]
        self.font_names = [str(s) for s in arrays["font_names"]]
        self.clean_images = arrays["clean_images"]
        self.class_fonts = arrays["class_fonts"]
        self.homoglyphs = [(chr(int(a)), chr(int(b))) for a, b in arrays["homoglyphs"]]
        self.pruned_renderings = [
            (chr(int(c)), self.font_names[int(f)], chr(int(o)))
            for c, f, o in arrays["pruned_renderings"]
        ]
        self.num_classes = len(codepoints)
        self.num_train_classes = self.num_classes // 2
        if split == "train":
            self.classes = np.arange(self.num_train_classes)
        elif split == "test":
            self.classes = np.arange(self.num_train_classes, self.num_classes)
        else:
            self.classes = np.arange(self.num_classes)
        keep = np.isin(arrays["labels"], self.classes)
        self.images = arrays["images"][keep]
        self.labels = arrays["labels"][keep].astype(np.int64)
        self.font_ids = arrays["font_ids"][keep].astype(np.int64)
        self.superclass_labels = self.class_scripts[self.labels]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index):
        label = int(self.labels[index])
        if self.transform is None:
            image = torch.from_numpy(self.images[index]).float().div_(255.0)[None]
        else:
            from PIL import Image

            image = self.transform(Image.fromarray(self.images[index]))
        if self.target_transform is not None:
            label = self.target_transform(label)
        return image, label

    def __repr__(self) -> str:
        per_script = np.bincount(self.class_scripts[self.classes], minlength=len(self.scripts))
        counts = ", ".join(f"{s} {n}" for s, n in zip(self.scripts, per_script) if n)
        return (
            f"GlyphDataset(split={self.split!r}, classes={len(self.classes)} "
            f"[{counts}], images={len(self)}, size={self.images.shape[1:]})"
        )
