"""The file layouts of CUB-200-2011, Cars196, Stanford Online Products and In-shop,
read and checked before any model is built.

Each reader returns the image paths and class ids of every split in the order the
data set class that serves them reads them (PML's, where PML has one), after
checking what those classes skip or take on trust: header and count lines, ids that
must agree, class ids in range, splits that are not empty, files that exist. Every
problem is one DataError line naming the file and the fix.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

from benchmarks.data import LAYOUTS, DataError

#: Metric learning's class splits (1-based class ids, both ends included).
CLASS_SPLITS = {
    "cub": {"train": (1, 100), "test": (101, 200)},
    "cars196": {"train": (1, 98), "test": (99, 196)},
}
#: SOP's files split it; these are the class ids they hold (for messages only).
SOP_CLASSES = {"train": (11318, 1, 11318), "test": (11316, 11319, 22634)}
SOP_HEADER = ["image_id", "class_id", "super_class_id", "path"]
INSHOP_HEADER = ["image_name", "item_id", "evaluation_status"]
INSHOP_STATUSES = ("train", "query", "gallery")
INSHOP_ITEM = re.compile(r"^id_(\d+)$")
#: The official Cars196 layout, which PML has no class for.
CARS_OFFICIAL = "cars_annos.mat + car_ims/"
#: Missing images named in the error, at most.
SHOWN_MISSING = 3


@dataclass
class Split:
    paths: List[str]
    labels: List[int]


@dataclass
class Listing:
    """The splits of one data set as its files list them."""

    splits: Dict[str, Split]
    files: str  # the list files, for messages
    layout: str  # the layout they were read as

    def __getitem__(self, split: str) -> Split:
        return self.splits[split]


# --------------------------------------------------------------------------- text files
def _lines(root: str, rel: str) -> List[str]:
    """The lines of ``root/rel``; a blank line is an error (PML's readers fail on it
    or, in names.csv, shift every label after it)."""
    with open(os.path.join(root, rel), encoding="utf-8") as f:
        lines = f.read().splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            raise DataError(f"{rel} line {number} is blank; remove it")
    return lines


def _no_header(rel: str, number: int) -> str:
    return " (the file has no header line)" if number == 1 else ""


def _ints(rel: str, number: int, line: str, fields: Sequence[str], form: str) -> List[int]:
    try:
        return [int(x) for x in fields]
    except ValueError:
        raise DataError(
            f"{rel} line {number} ({line!r}) is not {form!r} with integer ids"
            + _no_header(rel, number)
        ) from None


def _id_rows(root: str, rel: str, form: str) -> List[Tuple[int, int, str]]:
    """(line number, id, value) of a CUB file of '<id> <value>' lines."""
    rows = []
    for number, line in enumerate(_lines(root, rel), 1):
        fields = line.split()
        if len(fields) != 2:
            raise DataError(
                f"{rel} line {number} ({line!r}) is not {form!r}" + _no_header(rel, number)
            )
        (image_id,) = _ints(rel, number, line, fields[:1], form)
        rows.append((number, image_id, fields[1]))
    return rows


# --------------------------------------------------------------------------- class splits
def _check_class(dataset: str, rel: str, number: int, label: int) -> None:
    lo, hi = CLASS_SPLITS[dataset]["train"][0], CLASS_SPLITS[dataset]["test"][1]
    if not lo <= label <= hi:
        raise DataError(
            f"{rel} line {number}: class id {label} is outside {lo}-{hi} (ids are 1-based)"
        )


def _split_by_class(dataset: str, paths: List[str], labels: List[int], files: str) -> dict:
    """The train and test splits by class id; an empty one is an error."""
    ranges = CLASS_SPLITS[dataset]
    splits = {}
    for split, (lo, hi) in ranges.items():
        keep = [i for i, label in enumerate(labels) if lo <= label <= hi]
        if not keep:
            (a, b), (c, d) = ranges["train"], ranges["test"]
            raise DataError(
                f"{files} list no image of classes {lo}-{hi}, so the {split} split is empty "
                f"({dataset} trains on classes {a}-{b} and tests on {c}-{d}); "
                "give --data-root a copy with classes on both sides"
            )
        splits[split] = Split([paths[i] for i in keep], [labels[i] for i in keep])
    return splits


# --------------------------------------------------------------------------- CUB
def read_cub(root: str) -> Listing:
    """CUB_200_2011/{images.txt, image_class_labels.txt}: the same image ids, line by
    line (PML drops a row whose ids differ), classes 1-100 train, 101-200 test."""
    base = os.path.join(root, "CUB_200_2011")
    images_rel, classes_rel = "CUB_200_2011/images.txt", "CUB_200_2011/image_class_labels.txt"
    images = _id_rows(root, images_rel, "<image_id> <path>")
    classes = _id_rows(root, classes_rel, "<image_id> <class_id>")
    if len(images) != len(classes):
        raise DataError(
            f"{images_rel} lists {len(images)} images but {classes_rel} {len(classes)}; "
            "both list every image id once, in the same order"
        )
    paths, labels = [], []
    for (number, image_id, path), (_, class_image_id, class_id) in zip(images, classes):
        if image_id != class_image_id:
            raise DataError(
                f"line {number} of {images_rel} is image {image_id} but of {classes_rel} "
                f"image {class_image_id}; both list the image ids in the same order"
            )
        (label,) = _ints(classes_rel, number, class_id, [class_id], "<image_id> <class_id>")
        _check_class("cub", classes_rel, number, label)
        paths.append(os.path.join(base, "images", path))
        labels.append(label)
    files = f"{images_rel} and {classes_rel}"
    return Listing(_split_by_class("cub", paths, labels, files), files, "CUB_200_2011")


# --------------------------------------------------------------------------- Cars196
def read_cars196(root: str) -> Listing:
    """The official cars_annos.mat + car_ims/ when cars_annos.mat is there, else PML's
    layout (names.csv, anno_{train,test}.csv, car_data/car_data/)."""
    if os.path.exists(os.path.join(root, "cars_annos.mat")):
        return read_cars_official(root)
    if os.path.exists(os.path.join(root, "names.csv")):
        return read_cars_csv(root)
    raise DataError(
        f"--data-root {root!r} has neither cars_annos.mat nor names.csv; expected "
        f"{LAYOUTS['cars196']} (nothing is downloaded)"
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
        _check_class("cars196", f"{rel} annotations", number, label)
        paths.append(os.path.join(root, str(row["relative_im_path"])))
        labels.append(label)
    names = mat.get("class_names")
    if names is not None and labels and max(labels) > np.size(names):
        raise DataError(f"{rel} has class id {max(labels)} but names {np.size(names)} classes")
    splits = _split_by_class("cars196", paths, labels, rel)
    return Listing(splits, rel, CARS_OFFICIAL)


def _cars_folder(root: str, split: str, name: str) -> str:
    # PML's Cars196: a "/" in a class name is a "-" in its folder name
    return os.path.join(root, "car_data", "car_data", split, name.replace("/", "-"))


def read_cars_csv(root: str) -> Listing:
    """PML's layout: names.csv names class k on line k (no header line: PML reads every
    line as a name); anno_{train,test}.csv rows 'file,x1,y1,x2,y2,class' (no header);
    images in car_data/car_data/<split>/<class name>/. PML takes classes 1-98 from
    both files for training, then 99-196 for testing."""
    names = _lines(root, "names.csv")
    rows: List[Tuple[str, str, int, str]] = []  # (split, file, class id, where)
    for split in ("train", "test"):
        rel = f"anno_{split}.csv"
        form = "file,x1,y1,x2,y2,class"
        for number, line in enumerate(_lines(root, rel), 1):
            fields = line.split(",")
            if len(fields) != 6:
                raise DataError(
                    f"{rel} line {number} ({line!r}) is not {form!r}" + _no_header(rel, number)
                )
            label = _ints(rel, number, line, fields[1:], form)[-1]
            _check_class("cars196", rel, number, label)
            if label > len(names):
                raise DataError(
                    f"{rel} line {number}: class {label}, but names.csv names {len(names)} classes"
                )
            rows.append((split, fields[0], label, f"{rel} line {number}"))
    _check_names_have_no_header(root, names, rows)
    paths = [os.path.join(_cars_folder(root, s, names[c - 1]), f) for s, f, c, _ in rows]
    labels = [c for _, _, c, _ in rows]
    files = "anno_train.csv and anno_test.csv"
    return Listing(_split_by_class("cars196", paths, labels, files), files, "names.csv layout")


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


# --------------------------------------------------------------------------- SOP
def read_sop(root: str) -> Listing:
    """Stanford_Online_Products/Ebay_{train,test}.txt: the header line PML skips, then
    'image_id class_id super_class_id path' rows; train and test classes disjoint."""
    base = os.path.join(root, "Stanford_Online_Products")
    header = " ".join(SOP_HEADER)
    splits = {}
    for split in ("train", "test"):
        rel = f"Stanford_Online_Products/Ebay_{split}.txt"
        lines = _lines(root, rel)
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
            _, class_id, _ = _ints(rel, number, line, fields[:3], header)
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


# --------------------------------------------------------------------------- In-shop
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
            f"list_eval_partition.txt; expected {LAYOUTS['inshop']} (nothing is downloaded)"
        )
    lines = _lines(root, rel)
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


# --------------------------------------------------------------------------- images
def require_images(listing: Listing, root: str, dataset: str) -> None:
    """Every listed image exists, or one error naming the first missing ones."""
    paths = [p for split in listing.splits.values() for p in split.paths]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        shown = ", ".join(os.path.relpath(p, root) for p in missing[:SHOWN_MISSING])
        more = f" and {len(missing) - SHOWN_MISSING} more" if len(missing) > SHOWN_MISSING else ""
        raise DataError(
            f"{len(missing)} of the {len(paths)} images that {listing.files} list are missing "
            f"under --data-root {root!r}: {shown}{more}; expected {LAYOUTS[dataset]}"
        )


def read_layout(dataset: str, root: str) -> Listing:
    """The checked splits of ``dataset`` under ``root``, every image present."""
    reader = {"cub": read_cub, "cars196": read_cars196, "sop": read_sop, "inshop": read_inshop}
    try:
        listing = reader[dataset](root)
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"--data-root {root!r}: {e}; expected {LAYOUTS[dataset]}") from None
    require_images(listing, root, dataset)
    return listing
