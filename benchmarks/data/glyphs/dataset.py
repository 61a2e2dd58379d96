"""GlyphDataset: the glyph data set as a torch ``Dataset``, read from its cache.

The data set is characters of seven scripts drawn in the fonts inside
matplotlib's wheel, with the script as superclass; how it is generated is
:mod:`benchmarks.data.glyphs.generator`'s business. This module finds a
build in the cache and loads it, and imports the generator only on a cache
miss, so reading a cached build needs only NumPy and torch; building one
needs the ``glyphs`` extra (matplotlib, fontTools, Pillow, SciPy).

Where builds are cached and how they are keyed: :mod:`~benchmarks.data.glyphs.files`.
Without the extra (no full key, no build) the newest cached build with the
same parameters is read as it is.

Split: a class's global id is its position in the generator's canonical
(script-interleaved) order; the first half of the ids
(``0 .. num_classes//2 - 1``) is the training split and the rest the test
split, so every script appears on both sides and labels stay global ids.
"""

from __future__ import annotations

import json
from typing import Dict, Optional, Tuple

import numpy as np
import torch

from .files import (
    FONT_FILES,
    GLYPHS_VERSION,
    _cache_key,
    _check_params,
    _read,
    _read_any_build,
    _write,
    cache_path,
    default_cache_dir,
)

__all__ = [
    "FONT_FILES",
    "GLYPHS_VERSION",
    "GlyphDataset",
    "build_glyph_arrays",
    "cache_path",
    "default_cache_dir",
    "load_glyph_arrays",
]


def build_glyph_arrays(
    samples_per_class: int = 40,
    image_size: int = 32,
    seed: int = 0,
    num_classes: Optional[int] = None,
    verbose: bool = True,
) -> Dict[str, np.ndarray]:
    """Generate the arrays without the cache: imports the generator and calls
    :func:`benchmarks.data.glyphs.generator.build_glyph_arrays`. Needs the
    ``glyphs`` extra."""
    from .generator import build_glyph_arrays as build

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
        from . import generator  # noqa: F401  (a miss needs it: fail before building)
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
