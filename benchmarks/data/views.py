"""Torch data sets over images: by path, in memory, or another view of PML's.

Pillow is imported when an image is read, not before: the glyph data set is read
without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional, Sequence

import numpy as np
from torch.utils.data import Dataset

if TYPE_CHECKING:
    from PIL import Image


class PathDataset(Dataset):
    """Images given by path, with integer labels and a transform."""

    def __init__(self, paths: Sequence[str], labels: Sequence[int], transform=None, mode="RGB"):
        self.paths = list(paths)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.transform = transform
        self.mode = mode

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):
        from PIL import Image

        with Image.open(self.paths[i]) as img:
            img = img.convert(self.mode)
        return (self.transform(img) if self.transform else img), int(self.labels[i])


class ArrayDataset(Dataset):
    """uint8 images (N, H, W) held in memory, with integer labels and a transform."""

    def __init__(self, images: np.ndarray, labels: Sequence[int], transform=None):
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image

        img = Image.fromarray(self.images[i], mode="L")
        return (self.transform(img) if self.transform else img), int(self.labels[i])


class RGBFirst:
    """Converts a PIL image to RGB, then applies ``transform``: PML's data sets hand
    the transform the image in the file's own mode (L, LA, P, CMYK, RGBA)."""

    def __init__(self, transform: Optional[Callable] = None):
        self.transform = transform

    def __call__(self, img: Image.Image):
        img = img.convert("RGB")
        return img if self.transform is None else self.transform(img)


class WithTransform(Dataset):
    """Another view of a PML data set (its items are (PIL image, label))."""

    def __init__(self, base, transform):
        self.base, self.transform = base, transform
        self.labels = np.asarray(base.labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        img, label = self.base[i]
        return self.transform(img), int(label)


def with_transform(dataset: Dataset, transform: Optional[Callable]) -> Dataset:
    """``dataset`` itself without a transform, else a view of it through ``transform``."""
    return dataset if transform is None else WithTransform(dataset, transform)
