"""Face verification data: train on CASIA-WebFace, evaluate on LFW.

Recall@K runs over every LFW image, query = reference: the identities with a
single image (most of LFW's) are not queries, as PML's rule has it, but stay
in the reference as distractors, and the set does not depend on which images
pairs.txt happens to sample. The pairs' images are a subset of it, so the
10-fold verification reuses the same embeddings.
"""

from __future__ import annotations

import os
from typing import Dict, List, Tuple

import numpy as np

from benchmarks.data.errors import DataError
from benchmarks.data.files import image_files, require_root
from benchmarks.data.lfw_pairs import ImageRef, IndexedPairs, PairList, parse_pairs
from benchmarks.data.spec import DataRequest, DataSet
from benchmarks.data.splits import DEFAULT_RECALL_KS, DataSplits
from benchmarks.data.transforms import photo_transforms
from benchmarks.data.views import PathDataset

LAYOUT = "DATA_ROOT/{CASIA-WebFace/<identity>/<images>, lfw/<Name>/<Name>_<NNNN>.jpg, pairs.txt}"
TRAIN_FOLDER, EVAL_FOLDER, PAIRS_FILE = "CASIA-WebFace", "lfw", "pairs.txt"
#: How many missing images an error names.
SHOWN_MISSING = 5


def identity_folders(folder: str) -> Tuple[List[str], List[int], List[str]]:
    """(image paths, labels, identity names): one sub-folder of ``folder`` per
    identity, sorted by name; every identity folder must hold an image."""
    if not os.path.isdir(folder):
        raise DataError(f"{folder} is not a folder; expected {LAYOUT}")
    names = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
    if not names:
        raise DataError(f"{folder} holds no identity folder; expected {LAYOUT}")
    paths, labels = [], []
    for label, name in enumerate(names):
        files = image_files(os.path.join(folder, name))
        if not files:
            raise DataError(f"{os.path.join(folder, name)} holds no image; expected {LAYOUT}")
        paths.extend(os.path.join(folder, name, f) for f in files)
        labels.extend([label] * len(files))
    return paths, labels, names


def lfw_image(name: str, number: int) -> str:
    """LFW's path of an image, relative to lfw/: Name/Name_0001.jpg."""
    return os.path.join(name, f"{name}_{number:04d}.jpg")


def index_pairs(
    pairs: PairList, lfw_dir: str, lfw_paths: List[str], pairs_file: str
) -> IndexedPairs:
    """The pairs as indices into ``lfw_paths``; every image a pair names must be there."""
    index: Dict[str, int] = {os.path.relpath(p, lfw_dir): i for i, p in enumerate(lfw_paths)}
    missing: List[str] = []

    def lookup(ref: ImageRef) -> int:
        rel = lfw_image(*ref)
        if rel not in index and rel not in missing:
            missing.append(rel)
        return index.get(rel, -1)

    index1 = np.array([lookup(r) for r in pairs.left], dtype=np.int64)
    index2 = np.array([lookup(r) for r in pairs.right], dtype=np.int64)
    if missing:
        raise DataError(
            f"{pairs_file} names {len(missing)} images missing under {lfw_dir}, the first: "
            f"{', '.join(missing[:SHOWN_MISSING])}; expected {LAYOUT}"
        )
    description = (
        f"{pairs.num_folds}-fold verification on the {len(pairs.same)} pairs of {PAIRS_FILE} "
        "(threshold chosen on the other folds; cosine distance of L2-normalised embeddings)"
    )
    return IndexedPairs(index1, index2, pairs.same, pairs.folds, pairs.num_folds, description)


def load(request: DataRequest) -> DataSplits:
    """CASIA-WebFace's identities for training, LFW for Recall@K and verification."""
    data_root = request.data_root
    train_tf, eval_tf = request.train_transform, request.eval_transform
    require_root(data_root, "faces", LAYOUT, TRAIN_FOLDER, EVAL_FOLDER, PAIRS_FILE)
    train_paths, train_labels, train_names = identity_folders(os.path.join(data_root, TRAIN_FOLDER))
    lfw_dir = os.path.join(data_root, EVAL_FOLDER)
    lfw_paths, lfw_labels, lfw_names = identity_folders(lfw_dir)
    pairs_file = os.path.join(data_root, PAIRS_FILE)
    pairs = index_pairs(parse_pairs(pairs_file), lfw_dir, lfw_paths, pairs_file)
    train = PathDataset(train_paths, train_labels, transform=train_tf)
    lfw = PathDataset(lfw_paths, lfw_labels, transform=eval_tf)
    return DataSplits(
        train,
        PathDataset(train_paths, train_labels, transform=eval_tf),
        lfw,
        lfw,
        train.labels,
        True,
        DEFAULT_RECALL_KS,
        3,
        f"faces: CASIA-WebFace ({len(train_names)} identities, {len(train_paths)} images) "
        f"for training; LFW ({len(lfw_names)} identities, {len(lfw_paths)} images, "
        f"query = reference) for Recall@K and {pairs.num_folds}-fold verification",
        pairs=pairs,
    )


DATASET = DataSet("faces", load, photo_transforms, layout=LAYOUT)
