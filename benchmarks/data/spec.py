"""What each data set module declares, and what its loader is given."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Tuple

from benchmarks.data.splits import DataSplits

#: (train transform, eval transform); None: the items as the data set gives them.
Transforms = Tuple[Optional[Callable], Optional[Callable]]


@dataclass(frozen=True)
class DataRequest:
    """What a loader is given: the local folder, the two transforms, and the options
    only some data sets read."""

    data_root: Optional[str] = None
    train_transform: Optional[Callable] = None
    eval_transform: Optional[Callable] = None
    train_classes_file: Optional[str] = None
    glyph_samples_per_class: int = 40
    #: the glyphs' bars and notice while they are rendered the first time
    progress: bool = True


@dataclass(frozen=True)
class DataSet:
    """A data set the benchmark can train on.

    Args:
        name: its --dataset name.
        load: the splits, from a request (nothing is ever downloaded).
        transforms: (train, eval) transforms from the augmentation's name,
            --image-size (None where neither the data set nor the trunk reads it)
            and whether to apply ImageNet's normalisation (not for a trunk that
            normalises its input itself).
        reads: the run settings it reads, among data_root, image_size,
            train_classes and glyph_samples; the others do not apply to it.
        default_augment: its training augmentation unless --augment says otherwise.
        layout: what --data-root must hold, for the error messages.
    """

    name: str
    load: Callable[[DataRequest], DataSplits]
    transforms: Callable[[str, Optional[int], bool], Transforms]
    reads: Tuple[str, ...] = ("data_root", "image_size")
    default_augment: str = "standard"
    layout: str = ""
