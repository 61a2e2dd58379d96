"""The benchmark's data sets: training views and the test split of unseen classes.

One module per data set (glyphs, cub, cars196, sop, inshop, folder, fashion_mnist,
faces), each declaring a :class:`~benchmarks.data.spec.DataSet`: its loader, its
transforms, the run settings it reads and its default augmentation. Adding a data
set is adding its module and naming it in ``_MODULES``.

Nothing is ever downloaded: every loader reads a local folder and explains the
expected layout when it is missing or malformed. Importing this package imports
neither Pillow nor torchvision (the glyph data set is read without them).
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

from benchmarks.data import cars196, cub, faces, fashion_mnist, folder, inshop, sop
from benchmarks.data.errors import DataError
from benchmarks.data.glyphs import loader as glyphs
from benchmarks.data.spec import DataRequest, DataSet, Transforms
from benchmarks.data.splits import DEFAULT_RECALL_KS, DataSplits
from benchmarks.data.transforms import AUGMENTATIONS
from benchmarks.data.views import ArrayDataset, PathDataset, RGBFirst, WithTransform

__all__ = [
    "AUGMENTATIONS",
    "ArrayDataset",
    "DATASETS",
    "DEFAULT_RECALL_KS",
    "DataError",
    "DataRequest",
    "DataSet",
    "DataSplits",
    "PathDataset",
    "RGBFirst",
    "WithTransform",
    "default_augment",
    "image_transforms",
    "load_dataset",
    "settings_read_by_dataset",
]

#: The data set modules, in the order --dataset lists them.
_MODULES = (glyphs, cub, cars196, sop, inshop, folder, fashion_mnist, faces)
REGISTRY: Dict[str, DataSet] = {module.DATASET.name: module.DATASET for module in _MODULES}
DATASETS: Tuple[str, ...] = tuple(REGISTRY)
#: What --data-root must hold, per data set (glyphs: nothing, they are built in).
LAYOUTS: Dict[str, str] = {name: d.layout for name, d in REGISTRY.items() if d.layout}


def settings_read_by_dataset(name: str) -> Tuple[str, ...]:
    """The scoped settings of a run that data set ``name`` reads."""
    return REGISTRY[name].reads


def default_augment(name: str) -> str:
    """Data set ``name``'s training augmentation unless --augment says otherwise."""
    return REGISTRY[name].default_augment


def image_transforms(
    name: str, augment: Optional[str], image_size: Optional[int], normalize: bool = True
) -> Transforms:
    """(train, eval) transforms of data set ``name``: its evaluation view, and the
    ``augment`` augmentation (None: its default) for training. ``normalize``:
    ImageNet's normalisation of photos (off for a trunk that normalises itself)."""
    dataset = REGISTRY[name]
    return dataset.transforms(augment or dataset.default_augment, image_size, normalize)


def load_dataset(
    name: str,
    data_root: Optional[str] = None,
    train_transform: Optional[Callable] = None,
    eval_transform: Optional[Callable] = None,
    train_classes_file: Optional[str] = None,
    glyph_samples_per_class: int = 40,
    progress: bool = True,
) -> DataSplits:
    """The splits of data set ``name``. ``progress``: the glyphs' bars and notice
    while they are rendered the first time."""
    if name not in REGISTRY:
        raise DataError(f"--dataset must be one of {DATASETS}, got {name!r}")
    request = DataRequest(
        data_root=data_root,
        train_transform=train_transform,
        eval_transform=eval_transform,
        train_classes_file=train_classes_file,
        glyph_samples_per_class=glyph_samples_per_class,
        progress=progress,
    )
    return REGISTRY[name].load(request)
