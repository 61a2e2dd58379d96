"""The image lists of the data sets that ship list files (CUB-200-2011, Cars196,
Stanford Online Products, In-shop), read and checked before any model is built.

Each reader (in its data set's module) returns the image paths and class ids of
every split in the order the data set class that serves them reads them (PML's,
where PML has one), after checking what those classes skip or take on trust:
header and count lines, ids that must agree, class ids in range, splits that are
not empty, files that exist. Every problem is one DataError line naming the file
and the fix. This module holds what the readers share.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence, Tuple

from benchmarks.data.errors import DataError

#: Missing images named in the error, at most.
SHOWN_MISSING = 3
#: A data set's class split: split -> (first, last) 1-based class id, both included.
ClassSplit = Dict[str, Tuple[int, int]]


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

    def describe(self, name: str, source: str) -> str:
        """'name (source; train C classes / N images, test ...)'."""
        counts = ", ".join(
            f"{split} {len(set(s.labels))} classes / {len(s.paths)} images"
            for split, s in self.splits.items()
        )
        return f"{name} ({source}; {counts})"


# --------------------------------------------------------------------------- text files
def read_lines(root: str, rel: str) -> List[str]:
    """The lines of ``root/rel``; a blank line is an error (PML's readers fail on it
    or, in names.csv, shift every label after it)."""
    with open(os.path.join(root, rel), encoding="utf-8") as f:
        lines = f.read().splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            raise DataError(f"{rel} line {number} is blank; remove it")
    return lines


def no_header_hint(rel: str, number: int) -> str:
    """What a malformed first line may mean."""
    return " (the file has no header line)" if number == 1 else ""


def parse_ints(rel: str, number: int, line: str, fields: Sequence[str], form: str) -> List[int]:
    try:
        return [int(x) for x in fields]
    except ValueError:
        raise DataError(
            f"{rel} line {number} ({line!r}) is not {form!r} with integer ids"
            + no_header_hint(rel, number)
        ) from None


# --------------------------------------------------------------------------- class splits
def check_class(classes: ClassSplit, rel: str, number: int, label: int) -> None:
    """``label`` lies in the data set's class range."""
    lo, hi = classes["train"][0], classes["test"][1]
    if not lo <= label <= hi:
        raise DataError(
            f"{rel} line {number}: class id {label} is outside {lo}-{hi} (ids are 1-based)"
        )


def split_by_class(
    dataset: str, classes: ClassSplit, paths: List[str], labels: List[int], files: str
) -> Dict[str, Split]:
    """The train and test splits by class id; an empty one is an error."""
    splits = {}
    for split, (lo, hi) in classes.items():
        keep = [i for i, label in enumerate(labels) if lo <= label <= hi]
        if not keep:
            (a, b), (c, d) = classes["train"], classes["test"]
            raise DataError(
                f"{files} list no image of classes {lo}-{hi}, so the {split} split is empty "
                f"({dataset} trains on classes {a}-{b} and tests on {c}-{d}); "
                "give --data-root a copy with classes on both sides"
            )
        splits[split] = Split([paths[i] for i in keep], [labels[i] for i in keep])
    return splits


# --------------------------------------------------------------------------- images
def require_images(listing: Listing, root: str, layout: str) -> None:
    """Every listed image exists, or one error naming the first missing ones."""
    paths = [p for split in listing.splits.values() for p in split.paths]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        shown = ", ".join(os.path.relpath(p, root) for p in missing[:SHOWN_MISSING])
        more = f" and {len(missing) - SHOWN_MISSING} more" if len(missing) > SHOWN_MISSING else ""
        raise DataError(
            f"{len(missing)} of the {len(paths)} images that {listing.files} list are missing "
            f"under --data-root {root!r}: {shown}{more}; expected {layout}"
        )


def read_listing(reader: Callable[[str], Listing], root: str, layout: str) -> Listing:
    """The checked splits ``reader`` finds under ``root``, every image present."""
    try:
        listing = reader(root)
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"--data-root {root!r}: {e}; expected {layout}") from None
    require_images(listing, root, layout)
    return listing
