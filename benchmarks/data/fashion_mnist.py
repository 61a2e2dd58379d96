"""Fashion-MNIST from its IDX files: classes 0-4 train, 5-9 test (unseen classes)."""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np

from benchmarks.data.errors import DataError
from benchmarks.data.files import require_root
from benchmarks.data.spec import DataRequest, DataSet
from benchmarks.data.splits import DEFAULT_RECALL_KS, DataSplits
from benchmarks.data.transforms import greyscale_transforms
from benchmarks.data.views import ArrayDataset

LAYOUT = "DATA_ROOT/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]"


def read_idx(path: str) -> np.ndarray:
    """The array of an IDX file of unsigned bytes (gzipped or not)."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        zero, dtype, ndim = struct.unpack(">HBB", f.read(4))
        if zero != 0 or dtype != 0x08:
            raise DataError(f"{path} is not an IDX file of unsigned bytes")
        shape = struct.unpack(">" + "I" * ndim, f.read(4 * ndim))
        return np.frombuffer(f.read(), dtype=np.uint8).reshape(shape)


def find_idx(data_root: str, stem: str) -> str:
    for name in (stem, stem + ".gz"):
        if os.path.exists(os.path.join(data_root, name)):
            return os.path.join(data_root, name)
    raise DataError(f"--data-root {data_root!r} has no {stem}[.gz]; expected {LAYOUT}")


def load(request: DataRequest) -> DataSplits:
    data_root = require_root(request.data_root, "fashion-mnist", LAYOUT)
    images, labels = [], []
    for part in ("train", "t10k"):
        images.append(read_idx(find_idx(data_root, f"{part}-images-idx3-ubyte")))
        labels.append(read_idx(find_idx(data_root, f"{part}-labels-idx1-ubyte")))
    images, labels = np.concatenate(images), np.concatenate(labels).astype(np.int64)
    train_mask = labels < 5  # unseen classes at test time: 0-4 train, 5-9 test
    train_tf, eval_tf = request.train_transform, request.eval_transform
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


#: The published Fashion-MNIST results were made without augmentation.
DATASET = DataSet(
    "fashion-mnist",
    load,
    greyscale_transforms,
    reads=("data_root",),
    default_augment="none",
    layout=LAYOUT,
)
