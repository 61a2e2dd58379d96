"""CUB-200-2011: 200 bird species, classes 1-100 train, 101-200 test."""

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
from benchmarks.data.pml_classes import load_with_pml_class
from benchmarks.data.spec import DataRequest, DataSet
from benchmarks.data.splits import DataSplits
from benchmarks.data.transforms import photo_transforms

LAYOUT = "DATA_ROOT/CUB_200_2011/{images.txt, image_class_labels.txt, images/}"
CLASSES = {"train": (1, 100), "test": (101, 200)}
RECALL_KS = (1, 2, 4, 8, 16, 32)
IMAGES, IMAGE_CLASSES = "CUB_200_2011/images.txt", "CUB_200_2011/image_class_labels.txt"


def _id_rows(root: str, rel: str, form: str) -> List[Tuple[int, int, str]]:
    """(line number, id, value) of a CUB file of '<id> <value>' lines."""
    rows = []
    for number, line in enumerate(read_lines(root, rel), 1):
        fields = line.split()
        if len(fields) != 2:
            raise DataError(
                f"{rel} line {number} ({line!r}) is not {form!r}" + no_header_hint(rel, number)
            )
        (image_id,) = parse_ints(rel, number, line, fields[:1], form)
        rows.append((number, image_id, fields[1]))
    return rows


def read_cub(root: str) -> Listing:
    """CUB_200_2011/{images.txt, image_class_labels.txt}: the same image ids, line by
    line (PML drops a row whose ids differ), classes 1-100 train, 101-200 test."""
    base = os.path.join(root, "CUB_200_2011")
    images = _id_rows(root, IMAGES, "<image_id> <path>")
    classes = _id_rows(root, IMAGE_CLASSES, "<image_id> <class_id>")
    if len(images) != len(classes):
        raise DataError(
            f"{IMAGES} lists {len(images)} images but {IMAGE_CLASSES} {len(classes)}; "
            "both list every image id once, in the same order"
        )
    paths, labels = [], []
    for (number, image_id, path), (_, class_image_id, class_id) in zip(images, classes):
        if image_id != class_image_id:
            raise DataError(
                f"line {number} of {IMAGES} is image {image_id} but of {IMAGE_CLASSES} "
                f"image {class_image_id}; both list the image ids in the same order"
            )
        (label,) = parse_ints(IMAGE_CLASSES, number, class_id, [class_id], "<image_id> <class_id>")
        check_class(CLASSES, IMAGE_CLASSES, number, label)
        paths.append(os.path.join(base, "images", path))
        labels.append(label)
    files = f"{IMAGES} and {IMAGE_CLASSES}"
    return Listing(split_by_class("cub", CLASSES, paths, labels, files), files, "CUB_200_2011")


def load(request: DataRequest) -> DataSplits:
    root = require_root(request.data_root, "cub", LAYOUT, IMAGES, IMAGE_CLASSES)
    listing = read_listing(read_cub, root, LAYOUT)
    return load_with_pml_class("cub", "CUB", listing, request, RECALL_KS)


DATASET = DataSet("cub", load, photo_transforms, layout=LAYOUT)
