"""Cars196: 196 car models, classes 1-98 train, 99-196 test, in the official layout
(cars_annos.mat + car_ims/, which PML has no class for) or PML's (names.csv,
anno_{train,test}.csv)."""

from __future__ import annotations

import os
from typing import List, Tuple

from benchmarks.data.errors import DataError
from benchmarks.data.files import require_root
from benchmarks.data.listing import (
    Listing,
    check_class,
    no_header_hint,
    parse_ints,
    read_lines,
    read_listing,
    split_by_class,
)
from benchmarks.data.pml_classes import load_listed_paths, load_with_pml_class
from benchmarks.data.spec import DataRequest, DataSet
from benchmarks.data.splits import DataSplits
from benchmarks.data.transforms import photo_transforms

LAYOUT = (
    "DATA_ROOT/{cars_annos.mat, car_ims/} (official) or DATA_ROOT/{names.csv, "
    "anno_train.csv, anno_test.csv, car_data/car_data/{train,test}/<class name>/}"
)
CLASSES = {"train": (1, 98), "test": (99, 196)}
RECALL_KS = (1, 2, 4, 8, 16, 32)
#: The official Cars196 layout, which PML has no class for.
CARS_OFFICIAL = "cars_annos.mat + car_ims/"


def read_cars196(root: str) -> Listing:
    """The official cars_annos.mat + car_ims/ when cars_annos.mat is there, else PML's
    layout (names.csv, anno_{train,test}.csv, car_data/car_data/)."""
    if os.path.exists(os.path.join(root, "cars_annos.mat")):
        return read_cars_official(root)
    if os.path.exists(os.path.join(root, "names.csv")):
        return read_cars_csv(root)
    raise DataError(
        f"--data-root {root!r} has neither cars_annos.mat nor names.csv; expected "
        f"{LAYOUT} (nothing is downloaded)"
    )


def read_cars_official(root: str) -> Listing:
    """cars_annos.mat's struct array 'annotations' (relative_im_path, class, ...):
    classes 1-98 train, 99-196 test, whatever its 'test' field says (that is the
    classification split)."""
    import numpy as np
    import scipy.io

    rel = "cars_annos.mat"
    try:
        mat = scipy.io.loadmat(os.path.join(root, rel), squeeze_me=True)
    except Exception as e:  # scipy raises ValueError, TypeError, OSError... on a bad file
        raise DataError(f"{rel} is not a MATLAB file scipy can read ({e})") from None
    annotations = mat.get("annotations")
    fields = getattr(getattr(annotations, "dtype", None), "names", None) or ()
    if not {"relative_im_path", "class"} <= set(fields):
        raise DataError(
            f"{rel} has no struct array 'annotations' with fields relative_im_path and class "
            "(the official file from the Stanford Cars page)"
        )
    paths, labels = [], []
    for number, row in enumerate(np.atleast_1d(annotations), 1):
        label = int(row["class"])
        check_class(CLASSES, f"{rel} annotations", number, label)
        paths.append(os.path.join(root, str(row["relative_im_path"])))
        labels.append(label)
    names = mat.get("class_names")
    if names is not None and labels and max(labels) > np.size(names):
        raise DataError(f"{rel} has class id {max(labels)} but names {np.size(names)} classes")
    splits = split_by_class("cars196", CLASSES, paths, labels, rel)
    return Listing(splits, rel, CARS_OFFICIAL)


def _cars_folder(root: str, split: str, name: str) -> str:
    # PML's Cars196: a "/" in a class name is a "-" in its folder name
    return os.path.join(root, "car_data", "car_data", split, name.replace("/", "-"))


def read_cars_csv(root: str) -> Listing:
    """PML's layout: names.csv names class k on line k (no header line: PML reads every
    line as a name); anno_{train,test}.csv rows 'file,x1,y1,x2,y2,class' (no header);
    images in car_data/car_data/<split>/<class name>/. PML takes classes 1-98 from
    both files for training, then 99-196 for testing."""
    names = read_lines(root, "names.csv")
    rows: List[Tuple[str, str, int, str]] = []  # (split, file, class id, where)
    for split in ("train", "test"):
        rel = f"anno_{split}.csv"
        form = "file,x1,y1,x2,y2,class"
        for number, line in enumerate(read_lines(root, rel), 1):
            fields = line.split(",")
            if len(fields) != 6:
                raise DataError(
                    f"{rel} line {number} ({line!r}) is not {form!r}" + no_header_hint(rel, number)
                )
            label = parse_ints(rel, number, line, fields[1:], form)[-1]
            check_class(CLASSES, rel, number, label)
            if label > len(names):
                raise DataError(
                    f"{rel} line {number}: class {label}, but names.csv names {len(names)} classes"
                )
            rows.append((split, fields[0], label, f"{rel} line {number}"))
    _check_names_have_no_header(root, names, rows)
    paths = [os.path.join(_cars_folder(root, s, names[c - 1]), f) for s, f, c, _ in rows]
    labels = [c for _, _, c, _ in rows]
    files = "anno_train.csv and anno_test.csv"
    return Listing(
        split_by_class("cars196", CLASSES, paths, labels, files), files, "names.csv layout"
    )


def _check_names_have_no_header(root: str, names: List[str], rows) -> None:
    """A header line in names.csv sends every image to the folder of the class before
    its own. Found when the class folders the rows name are missing, while the names
    one line further down are exactly the folders there."""

    def found(offset: int) -> bool:
        for split, _, label, _ in rows:
            index = label - 1 + offset
            if index >= len(names) or not os.path.isdir(_cars_folder(root, split, names[index])):
                return False
        return True

    if rows and not found(0) and found(1):
        raise DataError(
            f"names.csv starts with a header line ({names[0]!r}): PML reads line k as the "
            "name of class k, so every label would point at the previous class's folder; "
            "remove that line"
        )


def load(request: DataRequest) -> DataSplits:
    root = require_root(request.data_root, "cars196", LAYOUT)
    listing = read_listing(read_cars196, root, LAYOUT)
    if listing.layout == CARS_OFFICIAL:
        return load_listed_paths("cars196", listing, request, RECALL_KS)
    return load_with_pml_class("cars196", "Cars196", listing, request, RECALL_KS)


DATASET = DataSet("cars196", load, photo_transforms, layout=LAYOUT)
