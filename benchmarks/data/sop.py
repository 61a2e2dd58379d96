"""Stanford Online Products: 22,634 products, split by its own list files (classes
1-11,318 train, 11,319-22,634 test), with eBay's 12 categories as superclasses."""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from benchmarks.data.errors import DataError
from benchmarks.data.files import require_root
from benchmarks.data.listing import Listing, Split, parse_ints, read_lines, read_listing
from benchmarks.data.pml_classes import load_with_pml_class
from benchmarks.data.spec import DataRequest, DataSet
from benchmarks.data.splits import DataSplits
from benchmarks.data.transforms import photo_transforms

LAYOUT = "DATA_ROOT/Stanford_Online_Products/{Ebay_train.txt, Ebay_test.txt, <category>_final/}"
RECALL_KS = (1, 10, 100, 1000)
LIST_FILES = [f"Stanford_Online_Products/Ebay_{s}.txt" for s in ("train", "test")]
#: SOP's files split it; these are the class ids they hold (for messages only).
SOP_CLASSES = {"train": (11318, 1, 11318), "test": (11316, 11319, 22634)}
SOP_HEADER = ["image_id", "class_id", "super_class_id", "path"]


def read_sop(root: str) -> Listing:
    """Stanford_Online_Products/Ebay_{train,test}.txt: the header line PML skips, then
    'image_id class_id super_class_id path' rows; train and test classes disjoint."""
    base = os.path.join(root, "Stanford_Online_Products")
    header = " ".join(SOP_HEADER)
    splits = {}
    for split in ("train", "test"):
        rel = f"Stanford_Online_Products/Ebay_{split}.txt"
        lines = read_lines(root, rel)
        if not lines or lines[0].split() != SOP_HEADER:
            first = repr(lines[0]) if lines else "nothing"
            raise DataError(
                f"{rel} starts with {first}, not the header line {header!r}: PML skips the "
                "first line, so a file without it loses its first image; put the header back"
            )
        paths, labels = [], []
        for number, line in enumerate(lines[1:], 2):
            fields = line.split()
            if len(fields) != 4:
                raise DataError(f"{rel} line {number} ({line!r}) is not {header!r}")
            _, class_id, _ = parse_ints(rel, number, line, fields[:3], header)
            paths.append(os.path.join(base, fields[3]))
            labels.append(class_id)
        if not paths:
            count, lo, hi = SOP_CLASSES[split]
            raise DataError(
                f"{rel} lists no image; the {split} split holds classes {lo}-{hi} "
                f"({count:,} products)"
            )
        splits[split] = Split(paths, labels)
    shared = set(splits["train"].labels) & set(splits["test"].labels)
    if shared:
        raise DataError(
            f"Ebay_train.txt and Ebay_test.txt share class ids {sorted(shared)[:5]}; "
            "the test classes must be unseen in training"
        )
    files = "Stanford_Online_Products/Ebay_{train,test}.txt"
    return Listing(splits, files, "Stanford_Online_Products")


def sop_superclasses(data_root: str, num_rows: int) -> np.ndarray:
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


def load(request: DataRequest) -> DataSplits:
    root = require_root(request.data_root, "sop", LAYOUT, *LIST_FILES)
    listing = read_listing(read_sop, root, LAYOUT)
    splits = load_with_pml_class("sop", "StanfordOnlineProducts", listing, request, RECALL_KS)
    superclasses = sop_superclasses(root, len(splits.train))
    return dataclasses.replace(splits, train_superclasses=superclasses)


DATASET = DataSet("sop", load, photo_transforms, layout=LAYOUT)
