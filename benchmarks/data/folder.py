"""Any folder of images, one sub-folder per class; half the classes train (or the
ones a file names), the others test."""

from __future__ import annotations

import os

from benchmarks.data.errors import DataError
from benchmarks.data.files import image_files, require_root
from benchmarks.data.spec import DataRequest, DataSet
from benchmarks.data.splits import DEFAULT_RECALL_KS, DataSplits
from benchmarks.data.transforms import photo_transforms
from benchmarks.data.views import PathDataset

LAYOUT = "DATA_ROOT/<class name>/<image files> (one sub-folder per class)"


def load(request: DataRequest) -> DataSplits:
    data_root = require_root(request.data_root, "folder", LAYOUT)
    classes = sorted(d for d in os.listdir(data_root) if os.path.isdir(os.path.join(data_root, d)))
    if len(classes) < 4:
        raise DataError(
            f"--data-root {data_root!r} holds {len(classes)} class folders; at least 4 are "
            f"needed (expected {LAYOUT})"
        )
    if request.train_classes_file:
        with open(request.train_classes_file) as f:
            train_classes = {line.strip() for line in f if line.strip()}
        unknown = train_classes - set(classes)
        if unknown:
            raise DataError(f"--train-classes names unknown classes: {sorted(unknown)[:5]}")
    else:
        train_classes = set(classes[: len(classes) // 2])
    split = {"train": ([], []), "test": ([], [])}
    for label, name in enumerate(classes):
        folder = os.path.join(data_root, name)
        files = image_files(folder)
        side = "train" if name in train_classes else "test"
        split[side][0].extend(os.path.join(folder, f) for f in files)
        split[side][1].extend([label] * len(files))
    for side, (paths, _) in split.items():
        if not paths:
            raise DataError(f"the {side} classes of --data-root {data_root!r} hold no image")
    train = PathDataset(*split["train"], transform=request.train_transform)
    test = PathDataset(*split["test"], transform=request.eval_transform)
    return DataSplits(
        train,
        PathDataset(*split["train"], transform=request.eval_transform),
        test,
        test,
        train.labels,
        True,
        DEFAULT_RECALL_KS,
        3,
        f"folder {data_root} ({len(train_classes)} train / "
        f"{len(classes) - len(train_classes)} test classes)",
    )


DATASET = DataSet(
    "folder",
    load,
    photo_transforms,
    reads=("data_root", "image_size", "train_classes"),
    layout=LAYOUT,
)
