"""--select-on-val: a class-disjoint part of the training classes, held out to choose
the checkpoint; the test classes choose nothing.

The held-out classes are drawn by a fixed seed, whatever the training seed, so
every run of a comparison holds out the same classes.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np
from torch.utils.data import Dataset, Subset

from benchmarks.data.errors import DataError
from benchmarks.data.splits import DataSplits

#: The seed that draws the held-out classes.
VALIDATION_SEED = 0
#: --val-classes' default: the share of the training classes held out.
DEFAULT_FRACTION = 0.2


class LabelledSubset(Subset):
    """A Subset that lists its items' labels, as the samplers and the tree hook read them."""

    def __init__(self, dataset: Dataset, indices: Sequence[int], labels: np.ndarray):
        super().__init__(dataset, list(indices))
        self.labels = np.asarray(labels, dtype=np.int64)


def validation_classes(
    train_labels: np.ndarray, fraction: float, seed: int = VALIDATION_SEED
) -> np.ndarray:
    """round(fraction x C) of the C training classes (at least 2, at most C - 2),
    drawn by ``seed``, sorted."""
    classes = np.unique(train_labels)
    count = int(round(fraction * len(classes)))
    if count < 2 or count > len(classes) - 2:
        raise DataError(
            f"--val-classes {fraction} holds out {count} of the {len(classes)} training "
            "classes: validation needs at least 2, and training at least 2; choose another "
            "fraction"
        )
    order = np.random.default_rng(seed).permutation(classes)
    return np.sort(order[:count])


def hold_out(splits: DataSplits, held_out: np.ndarray) -> DataSplits:
    """The splits training on every training class but ``held_out``, with the clean
    views of ``held_out``'s samples as ``validation`` (each query against the
    others); the test split is untouched."""
    labels = splits.train_labels
    is_held_out = np.isin(labels, held_out)
    keep, held = np.flatnonzero(~is_held_out), np.flatnonzero(is_held_out)
    if np.bincount(np.unique(labels[held], return_inverse=True)[1]).min() < 2:
        raise DataError("a held-out validation class has a single sample: choose --val-classes")
    supers = splits.train_superclasses
    return replace(
        splits,
        train=LabelledSubset(splits.train, keep, labels[keep]),
        train_eval=LabelledSubset(splits.train_eval, keep, labels[keep]),
        train_labels=labels[keep],
        train_superclasses=None if supers is None else np.asarray(supers)[keep],
        validation=LabelledSubset(splits.train_eval, held, labels[held]),
        validation_classes=np.asarray(held_out),
    )


def validation_splits(splits: DataSplits) -> DataSplits:
    """The held-out classes as splits to evaluate on (query = reference)."""
    if splits.validation is None:
        raise ValueError("these splits hold no validation classes")
    return replace(
        splits,
        query=splits.validation,
        reference=splits.validation,
        query_is_reference=True,
        pairs=None,
        validation=None,
    )
