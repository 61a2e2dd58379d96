"""DeepFashion In-shop: clothing items, the train items unseen at test time, where
queries are searched in a gallery; the garment category is the superclass."""

from __future__ import annotations

import os
import re
from typing import List, Optional, Tuple

import numpy as np

from benchmarks.data.errors import DataError
from benchmarks.data.files import require_root
from benchmarks.data.listing import Listing, Split, read_lines, read_listing
from benchmarks.data.pml_classes import fields
from benchmarks.data.spec import DataRequest, DataSet
from benchmarks.data.splits import DataSplits
from benchmarks.data.transforms import photo_transforms
from benchmarks.data.views import PathDataset

LAYOUT = (
    "DATA_ROOT/{Eval/list_eval_partition.txt, Img/img/...} (official unpack) or "
    "DATA_ROOT/{list_eval_partition.txt, img/...} (DeepFashion In-shop)"
)
RECALL_KS = (1, 10, 20, 30, 40, 50)
INSHOP_HEADER = ["image_name", "item_id", "evaluation_status"]
INSHOP_STATUSES = ("train", "query", "gallery")
INSHOP_ITEM = re.compile(r"^id_(\d+)$")


def read_inshop(root: str) -> Listing:
    """list_eval_partition.txt: a count line, the header 'image_name item_id
    evaluation_status', then rows 'img/WOMEN/<category>/id_XXXXXXXX/<file> id_XXXXXXXX
    <train|query|gallery>'. The official unpack keeps it in Eval/ and the images under
    Img/ (the rows' paths start with img/); the flat layout keeps both at the root.
    Labels are the item numbers; train items are unseen at test time."""
    official = os.path.join("Eval", "list_eval_partition.txt")
    if os.path.exists(os.path.join(root, official)):
        rel, image_root, layout = official, os.path.join(root, "Img"), "Eval/ + Img/"
    elif os.path.exists(os.path.join(root, "list_eval_partition.txt")):
        rel, image_root, layout = "list_eval_partition.txt", root, "flat"
    else:
        raise DataError(
            f"--data-root {root!r} has neither Eval/list_eval_partition.txt nor "
            f"list_eval_partition.txt; expected {LAYOUT} (nothing is downloaded)"
        )
    lines = read_lines(root, rel)
    rows = _inshop_rows(rel, lines)
    splits = {status: Split([], []) for status in INSHOP_STATUSES}
    for number, (path, item, status) in rows:
        match = INSHOP_ITEM.match(item)
        if not match:
            raise DataError(f"{rel} line {number}: item id {item!r} is not 'id_<digits>'")
        splits[status].paths.append(os.path.join(image_root, path))
        splits[status].labels.append(int(match.group(1)))
    for status, split in splits.items():
        if not split.paths:
            raise DataError(f"{rel} lists no {status!r} image; In-shop needs all three statuses")
    seen = set(splits["train"].labels)
    shared = seen & set(splits["query"].labels + splits["gallery"].labels)
    if shared:
        raise DataError(
            f"{rel}: items {['id_%08d' % i for i in sorted(shared)[:3]]} are in the train "
            "split and in query/gallery; the test items must be unseen in training"
        )
    return Listing(splits, rel, layout)


def _inshop_rows(rel: str, lines: List[str]) -> List[Tuple[int, List[str]]]:
    header = " ".join(INSHOP_HEADER)
    first = lines[0] if lines else ""
    if not first.strip().isdigit():
        what = "the header line" if first.split() == INSHOP_HEADER else repr(first)
        raise DataError(
            f"{rel} starts with {what}, not the number of images; the file is: a count line, "
            f"the header {header!r}, then one row per image"
        )
    if len(lines) < 2 or lines[1].split() != INSHOP_HEADER:
        second = repr(lines[1]) if len(lines) > 1 else "nothing"
        raise DataError(
            f"{rel} line 2 is {second}, not the header {header!r}; put the header back "
            "(a row there would be lost to a reader that skips two lines)"
        )
    count = int(first)
    rows = list(enumerate(lines[2:], 3))
    if count != len(rows):
        raise DataError(
            f"{rel} says {count} images on its first line but lists {len(rows)}; the file is "
            "cut short or its count line is wrong"
        )
    parsed = []
    for number, line in rows:
        fields = line.split()
        if len(fields) != 3 or fields[2] not in INSHOP_STATUSES:
            raise DataError(
                f"{rel} line {number} ({line!r}) is not '{header}' with a status in "
                f"{'/'.join(INSHOP_STATUSES)}"
            )
        parsed.append((number, fields))
    return parsed


def load(request: DataRequest) -> DataSplits:
    """The train items; queries against the gallery."""
    root = require_root(request.data_root, "inshop", LAYOUT)
    listing = read_listing(read_inshop, root, LAYOUT)
    train_tf, eval_tf = request.train_transform, request.eval_transform
    train = PathDataset(*fields(listing["train"]), transform=train_tf)
    return DataSplits(
        train,
        PathDataset(*fields(listing["train"]), transform=eval_tf),
        PathDataset(*fields(listing["query"]), transform=eval_tf),
        PathDataset(*fields(listing["gallery"]), transform=eval_tf),
        train.labels,
        False,
        RECALL_KS,
        3,
        listing.describe("inshop", f"{listing.layout} layout; query against gallery"),
        train_superclasses=inshop_categories(listing["train"].paths),
    )


def inshop_categories(paths) -> Optional[np.ndarray]:
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


DATASET = DataSet("inshop", load, photo_transforms, layout=LAYOUT)
