"""LFW's pairs.txt: the verification pairs of its View 2 protocol.

The header gives k folds and n pairs per class per fold; each fold then lists its
n matched pairs (one identity, two image numbers) followed by its n mismatched
pairs (two identities). The pairs are read as (identity, image number)
references, and indexed into an evaluation data set by the loader that has it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import numpy as np

from benchmarks.data.errors import DataError

#: An image of a pairs.txt line: (identity name, 1-based image number).
ImageRef = Tuple[str, int]


@dataclass(frozen=True)
class PairList:
    """The pairs of a pairs.txt, in file order."""

    left: List[ImageRef]
    right: List[ImageRef]
    same: np.ndarray  # bool: a matched pair (same identity)
    folds: np.ndarray  # the 0-based fold of each pair
    num_folds: int


@dataclass(frozen=True)
class IndexedPairs:
    """Pairs as indices into an evaluation data set (the query set the benchmark embeds)."""

    index1: np.ndarray
    index2: np.ndarray
    same: np.ndarray
    folds: np.ndarray
    num_folds: int
    description: str


HEADER_FORMAT = "'<folds>\\t<pairs per class per fold>' (LFW's View 2 header, e.g. '10\\t300')"
MATCHED_FORMAT = "'Name\\tn1\\tn2'"
MISMATCHED_FORMAT = "'Name1\\tn1\\tName2\\tn2'"


def _image_number(text: str) -> int:
    n = int(text)  # ValueError for anything but an integer
    if n < 1:
        raise ValueError(f"image numbers are 1-based, got {n}")
    return n


def _parse_header(path: str, line: str) -> Tuple[int, int]:
    fields = line.split()
    try:
        folds, per_class = (int(f) for f in fields)
    except ValueError:
        raise DataError(f"{path}: line 1 must be {HEADER_FORMAT}, got {line!r}")
    if folds < 2 or per_class < 1:
        raise DataError(
            f"{path}: line 1 gives {folds} folds of {per_class} pairs per class; "
            "k-fold verification needs at least 2 folds of at least 1 pair"
        )
    return folds, per_class


def parse_pairs(path: str) -> PairList:
    """LFW's pairs.txt: the header, then per fold its matched lines followed by its
    mismatched lines. A header that disagrees with the rows is an error."""
    with open(path) as f:
        lines = f.read().splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise DataError(f"{path} is empty; expected a header line {HEADER_FORMAT}")
    num_folds, per_class = _parse_header(path, lines[0])
    rows = lines[1:]
    expected = num_folds * 2 * per_class
    if len(rows) != expected:
        raise DataError(
            f"{path}: its header promises {num_folds} folds of {per_class} matched + "
            f"{per_class} mismatched pairs ({expected} lines), but {len(rows)} pair lines follow"
        )
    left, right, same = [], [], []
    for i, line in enumerate(rows):
        fold, position = divmod(i, 2 * per_class)
        matched = position < per_class
        fields = line.split()
        try:
            if matched and len(fields) == 3:
                left.append((fields[0], _image_number(fields[1])))
                right.append((fields[0], _image_number(fields[2])))
            elif not matched and len(fields) == 4:
                left.append((fields[0], _image_number(fields[1])))
                right.append((fields[2], _image_number(fields[3])))
            else:
                raise ValueError(f"{len(fields)} fields")
        except ValueError as e:
            kind, form = (
                ("matched", MATCHED_FORMAT) if matched else ("mismatched", MISMATCHED_FORMAT)
            )
            raise DataError(
                f"{path}: line {i + 2} should be a {kind} pair {form} (fold {fold + 1}), "
                f"got {line!r} ({e})"
            )
        same.append(matched)
    folds = np.arange(len(rows)) // (2 * per_class)
    return PairList(left, right, np.asarray(same, dtype=bool), folds, num_folds)
