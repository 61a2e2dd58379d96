"""Data sets for benchmarks/compare.py: train / eval views and the test split of unseen classes.

Nothing is ever downloaded: every loader reads a local folder and explains the
expected layout when it is missing or malformed.
"""

from __future__ import annotations

import copy
import gzip
import os
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional, Sequence

import numpy as np
from torch.utils.data import Dataset

if TYPE_CHECKING:
    from PIL import Image

    from benchmarks.verification import IndexedPairs

DATASETS = ("glyphs", "cub", "cars196", "sop", "inshop", "folder", "fashion-mnist", "faces")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

#: Recall@K cut-offs the literature reports per data set.
RECALL_KS = {
    "cub": (1, 2, 4, 8, 16, 32),
    "cars196": (1, 2, 4, 8, 16, 32),
    "sop": (1, 10, 100, 1000),
    "inshop": (1, 10, 20, 30, 40, 50),
}
DEFAULT_RECALL_KS = (1, 2, 4, 8)
#: The glyphs' rendering seed: the same images whatever the training seed.
GLYPH_SEED = 0

LAYOUTS = {
    "cub": "DATA_ROOT/CUB_200_2011/{images.txt, image_class_labels.txt, images/}",
    "cars196": (
        "DATA_ROOT/{cars_annos.mat, car_ims/} (official) or DATA_ROOT/{names.csv, "
        "anno_train.csv, anno_test.csv, car_data/car_data/{train,test}/<class name>/}"
    ),
    "sop": "DATA_ROOT/Stanford_Online_Products/{Ebay_train.txt, Ebay_test.txt, <category>_final/}",
    "inshop": (
        "DATA_ROOT/{Eval/list_eval_partition.txt, Img/img/...} (official unpack) or "
        "DATA_ROOT/{list_eval_partition.txt, img/...} (DeepFashion In-shop)"
    ),
    "folder": "DATA_ROOT/<class name>/<image files> (one sub-folder per class)",
    "fashion-mnist": "DATA_ROOT/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]",
    "faces": (
        "DATA_ROOT/{CASIA-WebFace/<identity>/<images>, lfw/<Name>/<Name>_<NNNN>.jpg, pairs.txt}"
    ),
}


class DataError(ValueError):
    """A data root that is missing or does not have the expected layout."""


def _require(data_root: Optional[str], name: str, *relative: str) -> str:
    if not data_root:
        raise DataError(f"--data-root is required for --dataset {name}; expected {LAYOUTS[name]}")
    if not os.path.isdir(data_root):
        raise DataError(
            f"--data-root {data_root!r} does not exist; expected {LAYOUTS[name]} "
            "(nothing is downloaded)"
        )
    for rel in relative:
        if not os.path.exists(os.path.join(data_root, rel)):
            raise DataError(
                f"--data-root {data_root!r} has no {rel!r}; expected {LAYOUTS[name]} "
                "(nothing is downloaded)"
            )
    return data_root


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
        from PIL import Image  # the glyph data set is read without Pillow

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


@dataclass
class DataSplits:
    train: Dataset  # with training augmentation
    train_eval: Dataset  # the same samples without augmentation (the tree hook embeds it)
    query: Dataset
    reference: Dataset
    train_labels: np.ndarray
    query_is_reference: bool
    recall_ks: Sequence[int]
    channels: int
    description: str
    pairs: Optional[IndexedPairs] = None  # verification pairs into ``query`` (faces)
    #: (N,) superclass of every training sample (glyph script, SOP super_class_id,
    #: In-shop garment category), or None: what the learned tree is measured against
    train_superclasses: Optional[np.ndarray] = None


def _pml_dataset(name: str, data_root: str, train_tf, eval_tf) -> DataSplits:
    """CUB, SOP and Cars196 in PML's layout through PML's dataset classes, their
    files checked first and their images converted to RGB."""
    from pytorch_metric_learning import datasets as pml_datasets

    from benchmarks.layouts import CARS_OFFICIAL, read_layout

    required = {
        "cub": ["CUB_200_2011/images.txt", "CUB_200_2011/image_class_labels.txt"],
        "sop": [f"Stanford_Online_Products/Ebay_{s}.txt" for s in ("train", "test")],
    }
    _require(data_root, name, *required.get(name, []))
    listing = read_layout(name, data_root)
    if listing.layout == CARS_OFFICIAL:
        return _path_splits(name, listing, train_tf, eval_tf)
    cls = {
        "cub": pml_datasets.CUB,
        "cars196": pml_datasets.Cars196,
        "sop": pml_datasets.StanfordOnlineProducts,
    }[name]
    train = cls(data_root, split="train", transform=RGBFirst(train_tf), download=False)
    test = cls(data_root, split="test", transform=RGBFirst(eval_tf), download=False)
    for split, dataset in (("train", train), ("test", test)):
        if list(dataset.paths) != listing[split].paths or (
            list(dataset.labels) != listing[split].labels
        ):
            raise DataError(
                f"PML's {cls.__name__} reads another {split} split from {listing.files} than "
                "the checked one; please report this file layout"
            )
    train_eval = copy.copy(train)  # the same list, another transform
    train_eval.transform = RGBFirst(eval_tf)
    return DataSplits(
        train,
        train_eval,
        test,
        test,
        np.asarray(train.labels),
        True,
        RECALL_KS[name],
        3,
        _describe(name, listing, f"PML's {cls.__name__}"),
        train_superclasses=_sop_superclasses(data_root, len(train)) if name == "sop" else None,
    )


def _sop_superclasses(data_root: str, num_rows: int) -> np.ndarray:
    """Ebay_train.txt's super_class_id column, row by row (PML's SOP class reads the
    same rows in the same order but keeps class_id and path only)."""
    path = os.path.join(data_root, "Stanford_Online_Products", "Ebay_train.txt")
    with open(path) as f:
        rows = [line.split() for line in f if line.strip()]
    if rows and rows[0][:3] == ["image_id", "class_id", "super_class_id"]:
        rows = rows[1:]
    if len(rows) != num_rows or any(len(r) != 4 for r in rows):
        raise DataError(
            f"{path}: expected {num_rows} rows 'image_id class_id super_class_id path' "
            "after its header line"
        )
    return np.asarray([int(r[2]) for r in rows], dtype=np.int64)


def _path_splits(name: str, listing, train_tf, eval_tf) -> DataSplits:
    """A layout PML has no class for: the listed paths, opened as RGB."""
    train = PathDataset(*_fields(listing["train"]), transform=train_tf)
    test = PathDataset(*_fields(listing["test"]), transform=eval_tf)
    return DataSplits(
        train,
        PathDataset(*_fields(listing["train"]), transform=eval_tf),
        test,
        test,
        train.labels,
        True,
        RECALL_KS[name],
        3,
        _describe(name, listing, listing.layout),
    )


def _fields(split):
    return split.paths, split.labels


def _describe(name: str, listing, source: str) -> str:
    counts = ", ".join(
        f"{split} {len(set(s.labels))} classes / {len(s.paths)} images"
        for split, s in listing.splits.items()
    )
    return f"{name} ({source}; {counts})"


def _inshop(data_root: str, train_tf, eval_tf) -> DataSplits:
    from benchmarks.layouts import read_layout

    _require(data_root, "inshop")
    listing = read_layout("inshop", data_root)
    train = PathDataset(*_fields(listing["train"]), transform=train_tf)
    return DataSplits(
        train,
        PathDataset(*_fields(listing["train"]), transform=eval_tf),
        PathDataset(*_fields(listing["query"]), transform=eval_tf),
        PathDataset(*_fields(listing["gallery"]), transform=eval_tf),
        train.labels,
        False,
        RECALL_KS["inshop"],
        3,
        _describe("inshop", listing, f"{listing.layout} layout; query against gallery"),
        train_superclasses=_inshop_categories(listing["train"].paths),
    )


def _inshop_categories(paths) -> Optional[np.ndarray]:
    """The garment category of each In-shop image, from its path
    (``.../img/<gender>/<category>/<item>/<file>``); None if a path has none."""
    categories = []
    for path in paths:
        parts = path.replace(os.sep, "/").split("/")
        if "img" not in parts:
            return None
        i = len(parts) - 1 - parts[::-1].index("img")
        if len(parts) - i < 5:  # img, gender, category, item, file
            return None
        categories.append(parts[i + 2])
    return np.asarray(categories)


def _folder(data_root: str, train_tf, eval_tf, train_classes_file: Optional[str]) -> DataSplits:
    _require(data_root, "folder")
    classes = sorted(d for d in os.listdir(data_root) if os.path.isdir(os.path.join(data_root, d)))
    if len(classes) < 4:
        raise DataError(
            f"--data-root {data_root!r} holds {len(classes)} class folders; at least 4 are "
            f"needed (expected {LAYOUTS['folder']})"
        )
    if train_classes_file:
        with open(train_classes_file) as f:
            train_classes = {line.strip() for line in f if line.strip()}
        unknown = train_classes - set(classes)
        if unknown:
            raise DataError(f"--train-classes names unknown classes: {sorted(unknown)[:5]}")
    else:
        train_classes = set(classes[: len(classes) // 2])
    split = {"train": ([], []), "test": ([], [])}
    for label, name in enumerate(classes):
        folder = os.path.join(data_root, name)
        files = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))
        side = "train" if name in train_classes else "test"
        split[side][0].extend(os.path.join(folder, f) for f in files)
        split[side][1].extend([label] * len(files))
    for side, (paths, _) in split.items():
        if not paths:
            raise DataError(f"the {side} classes of --data-root {data_root!r} hold no image")
    train = PathDataset(*split["train"], transform=train_tf)
    test = PathDataset(*split["test"], transform=eval_tf)
    return DataSplits(
        train,
        PathDataset(*split["train"], transform=eval_tf),
        test,
        test,
        train.labels,
        True,
        DEFAULT_RECALL_KS,
        3,
        f"folder {data_root} ({len(train_classes)} train / "
        f"{len(classes) - len(train_classes)} test classes)",
    )


def _read_idx(path: str) -> np.ndarray:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        zero, dtype, ndim = struct.unpack(">HBB", f.read(4))
        if zero != 0 or dtype != 0x08:
            raise DataError(f"{path} is not an IDX file of unsigned bytes")
        shape = struct.unpack(">" + "I" * ndim, f.read(4 * ndim))
        return np.frombuffer(f.read(), dtype=np.uint8).reshape(shape)


def _find_idx(data_root: str, stem: str) -> str:
    for name in (stem, stem + ".gz"):
        if os.path.exists(os.path.join(data_root, name)):
            return os.path.join(data_root, name)
    raise DataError(
        f"--data-root {data_root!r} has no {stem}[.gz]; expected {LAYOUTS['fashion-mnist']}"
    )


def _fashion_mnist(data_root: str, train_tf, eval_tf) -> DataSplits:
    _require(data_root, "fashion-mnist")
    images, labels = [], []
    for part in ("train", "t10k"):
        images.append(_read_idx(_find_idx(data_root, f"{part}-images-idx3-ubyte")))
        labels.append(_read_idx(_find_idx(data_root, f"{part}-labels-idx1-ubyte")))
    images, labels = np.concatenate(images), np.concatenate(labels).astype(np.int64)
    train_mask = labels < 5  # unseen classes at test time: 0-4 train, 5-9 test
    test = ArrayDataset(images[~train_mask], labels[~train_mask], eval_tf)
    return DataSplits(
        ArrayDataset(images[train_mask], labels[train_mask], train_tf),
        ArrayDataset(images[train_mask], labels[train_mask], eval_tf),
        test,
        test,
        labels[train_mask],
        True,
        DEFAULT_RECALL_KS,
        1,
        "Fashion-MNIST (classes 0-4 train, 5-9 test)",
    )


def _glyphs(train_tf, eval_tf, samples_per_class: int, progress: bool) -> DataSplits:
    from benchmarks.data.glyphs import GlyphDataset

    kw = dict(samples_per_class=samples_per_class, seed=GLYPH_SEED, verbose=progress)
    train = GlyphDataset(split="train", **kw)
    test = GlyphDataset(split="test", **kw)
    return DataSplits(
        _with_transform(train, train_tf),
        _with_transform(train, eval_tf),
        _with_transform(test, eval_tf),
        _with_transform(test, eval_tf),
        np.asarray(train.labels),
        True,
        DEFAULT_RECALL_KS,
        1,
        f"glyphs ({len(np.unique(train.labels))} train / {len(np.unique(test.labels))} test "
        f"character classes, {samples_per_class} renderings each, 32x32)",
        train_superclasses=np.asarray(train.superclass_labels),
    )


def _with_transform(dataset, transform) -> Dataset:
    return dataset if transform is None else WithTransform(dataset, transform)


def load_dataset(
    name: str,
    data_root: Optional[str] = None,
    train_transform: Optional[Callable] = None,
    eval_transform: Optional[Callable] = None,
    train_classes_file: Optional[str] = None,
    glyph_samples_per_class: int = 40,
    progress: bool = True,
) -> DataSplits:
    """The splits of data set ``name``. ``progress``: the glyphs' bars and notice
    while they are rendered the first time."""
    if name not in DATASETS:
        raise DataError(f"--dataset must be one of {DATASETS}, got {name!r}")
    if name == "glyphs":
        return _glyphs(train_transform, eval_transform, glyph_samples_per_class, progress)
    if name in ("cub", "cars196", "sop"):
        return _pml_dataset(name, data_root, train_transform, eval_transform)
    if name == "inshop":
        return _inshop(data_root, train_transform, eval_transform)
    if name == "faces":
        from benchmarks.faces import load_faces

        return load_faces(data_root, train_transform, eval_transform)
    if name == "folder":
        return _folder(data_root, train_transform, eval_transform, train_classes_file)
    return _fashion_mnist(data_root, train_transform, eval_transform)
