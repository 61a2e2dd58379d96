"""CUB, Cars196 and SOP through PML's data set classes, after their list files
are checked (benchmarks/data/listing.py), their images converted to RGB."""

from __future__ import annotations

import copy
from typing import List, Sequence, Tuple

import numpy as np

from benchmarks.data.errors import DataError
from benchmarks.data.listing import Listing, Split
from benchmarks.data.spec import DataRequest
from benchmarks.data.splits import DataSplits
from benchmarks.data.views import PathDataset, RGBFirst


def load_with_pml_class(
    name: str, class_name: str, listing: Listing, request: DataRequest, recall_ks: Sequence[int]
) -> DataSplits:
    """The splits PML's ``class_name`` (CUB, Cars196, StanfordOnlineProducts) reads,
    which must be the checked ``listing``'s."""
    from pytorch_metric_learning import datasets as pml_datasets

    cls = getattr(pml_datasets, class_name)
    root = request.data_root
    train = cls(root, split="train", transform=RGBFirst(request.train_transform), download=False)
    test = cls(root, split="test", transform=RGBFirst(request.eval_transform), download=False)
    for split, dataset in (("train", train), ("test", test)):
        if list(dataset.paths) != listing[split].paths or (
            list(dataset.labels) != listing[split].labels
        ):
            raise DataError(
                f"PML's {cls.__name__} reads another {split} split from {listing.files} than "
                "the checked one; please report this file layout"
            )
    train_eval = copy.copy(train)  # the same list, another transform
    train_eval.transform = RGBFirst(request.eval_transform)
    return DataSplits(
        train,
        train_eval,
        test,
        test,
        np.asarray(train.labels),
        True,
        recall_ks,
        3,
        listing.describe(name, f"PML's {cls.__name__}"),
    )


def fields(split: Split) -> Tuple[List[str], List[int]]:
    """(paths, labels) of a split, as PathDataset takes them."""
    return split.paths, split.labels


def load_listed_paths(
    name: str, listing: Listing, request: DataRequest, recall_ks: Sequence[int]
) -> DataSplits:
    """A layout PML has no class for: the listed paths, opened as RGB."""
    train = PathDataset(*fields(listing["train"]), transform=request.train_transform)
    test = PathDataset(*fields(listing["test"]), transform=request.eval_transform)
    return DataSplits(
        train,
        PathDataset(*fields(listing["train"]), transform=request.eval_transform),
        test,
        test,
        train.labels,
        True,
        recall_ks,
        3,
        listing.describe(name, listing.layout),
    )
