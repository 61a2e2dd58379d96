"""--freeze-trunk: a comparison's splits as a frozen trunk's features.

The trunk embeds every image once, in eval mode under no_grad, and the features
are cached on disk (cache.py). A cache file's key holds everything its numbers
depend on: the trunk and its weights (the file's sha256, or the seed of a random
initialisation), the data set (its description, --data-root, the split and a
checksum of its labels), the transform, the image size and the view (the clean
view, or augmented view k, drawn with its own seed). The (loss, seed) runs then
train the embedder alone on the features.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import replace
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch

from benchmarks.config import RunConfig
from benchmarks.console import Console
from benchmarks.data.spec import Transforms
from benchmarks.data.splits import DataSplits
from benchmarks.features import cache
from benchmarks.features.extract import extract
from benchmarks.features.views import FeatureSet, training_set
from benchmarks.models import make_trunk, trunk_weights

#: Augmented view k of the training images is drawn with torch seed FEATURE_VIEW_SEED + k,
#: whatever the training seed and K (so a larger --feature-views reuses the first views).
FEATURE_VIEW_SEED = 0


def describe_transform(transform: Optional[Callable]) -> str:
    """A transform as a cache key records it (its repr, without object addresses)."""
    if transform is None:
        return "none"
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(transform))


def labels_of(dataset: torch.utils.data.Dataset) -> np.ndarray:
    """The labels of ``dataset``'s items, in order."""
    labels = getattr(dataset, "labels", None)
    if labels is None:
        labels = [dataset[i][1] for i in range(len(dataset))]
    return np.asarray(labels, dtype=np.int64).reshape(-1)


def labels_sha256(labels: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(labels, dtype=np.int64).tobytes()).hexdigest()


def trunk_identity(cfg: RunConfig, seed: int) -> Dict[str, Any]:
    """The trunk and its weights: the weights file's name and sha256, or the seed of a
    random initialisation."""
    weights = trunk_weights(cfg.backbone, cfg.pretrained_weights)
    identity: Dict[str, Any] = {
        "backbone": cfg.backbone,
        "weights": weights if weights is not None else {"random_init_seed": seed},
    }
    if cfg.googlenet_transform_input is not None:
        identity["googlenet_transform_input"] = cfg.googlenet_transform_input
    return identity


def feature_key(
    cfg: RunConfig,
    trunk: Dict[str, Any],
    description: str,
    split: str,
    labels: np.ndarray,
    transform: Optional[Callable],
    view: Any,
) -> cache.FeatureKey:
    """What the features of one split and view depend on."""
    return {
        "version": cache.FEATURES_VERSION,
        "torch": ".".join(torch.__version__.split(".")[:2]),
        "trunk": trunk,
        "data": {
            "description": description,
            "root": cfg.data_root,
            "split": split,
            "labels_sha256": labels_sha256(labels),
            "size": int(len(labels)),
        },
        "transform": describe_transform(transform),
        "image_size": cfg.image_size,
        "view": view,
    }


class FrozenFeatures:
    """The frozen trunk's features of a comparison's splits: read from the cache or
    embedded once and cached, kept in memory for the runs that share the trunk.

    Args:
        cfg: the comparison (backbone, weights, data, image size, --feature-views).
        splits: the image splits.
        transforms: their (train, eval) transforms, as the cache key records them.
        device: where the trunk embeds.
        console: one line per cache file written; bars on a terminal.
        folder: the cache folder (default: cache.default_cache_dir()).
    """

    def __init__(
        self,
        cfg: RunConfig,
        splits: DataSplits,
        transforms: Transforms,
        device: torch.device,
        console: Console,
        folder: Optional[str] = None,
    ):
        self.cfg, self.images, self.device, self.console = cfg, splits, device, console
        self.train_transform, self.eval_transform = transforms
        self.folder = folder or cache.default_cache_dir()
        self._memo: Dict[str, DataSplits] = {}
        self._trunk: Optional[torch.nn.Module] = None

    def splits_for(self, seed: int) -> DataSplits:
        """The feature splits the runs of ``seed`` train on (the same for every seed
        unless the trunk is randomly initialised)."""
        identity = trunk_identity(self.cfg, seed)
        memo_key = json.dumps(identity, sort_keys=True)
        if memo_key not in self._memo:
            self._trunk = None
            self._memo[memo_key] = self._feature_splits(identity, seed)
            self._trunk = None  # free it: the features are all the runs need
        return self._memo[memo_key]

    def _feature_splits(self, identity: Dict[str, Any], seed: int) -> DataSplits:
        images, caches = self.images, {}

        def features(name: str, dataset, labels, transform, view) -> FeatureSet:
            split = name.split(":")[0]
            key = feature_key(
                self.cfg, identity, images.description, split, labels, transform, view
            )
            caches[name] = {"path": cache.cache_path(key, self.folder), "key": key}
            return FeatureSet(*self._features(key, dataset, labels, seed, view))

        train_labels = images.train_labels
        train = features("train", images.train_eval, train_labels, self.eval_transform, "clean")
        query_labels = labels_of(images.query)
        query = features("test-query", images.query, query_labels, self.eval_transform, "clean")
        reference = query
        if not images.query_is_reference:
            reference_labels = labels_of(images.reference)
            reference = features(
                "test-reference", images.reference, reference_labels, self.eval_transform, "clean"
            )
        views: List[torch.Tensor] = []
        for k in range(self.cfg.feature_views):
            view = {"augmented": k, "seed": FEATURE_VIEW_SEED + k}
            augmented = features(
                f"train:view{k}", images.train, images.train_labels, self.train_transform, view
            )
            views.append(augmented.features)
        return replace(
            images,
            train=training_set(train, torch.stack(views) if views else None),
            train_eval=train,
            query=query,
            reference=reference,
            feature_size=int(train.features.shape[1]),
            feature_caches=caches,
        )

    def _features(self, key, dataset, labels: np.ndarray, seed: int, view):
        """(features, labels) of ``key``: from its cache file, else embedded and cached."""
        path = cache.cache_path(key, self.folder)
        found = cache.read(path, key)
        if found is not None:
            return found
        start = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            if view != "clean":
                torch.manual_seed(view["seed"])  # the augmentations' draws
            desc = f"features: {key['data']['split']}"
            features, got = extract(
                self.trunk(seed), dataset, self.device, self.cfg.num_workers, desc,
                self.console.bars,
            )  # fmt: skip
        if not np.array_equal(got.numpy(), labels):
            raise RuntimeError(f"{key['data']['split']}: the labels changed while embedded")
        cache.write(path, key, features, got)
        which = "clean" if view == "clean" else f"augmented view {view['augmented']}"
        self.console.say(
            f"features: {key['trunk']['backbone']} {key['data']['split']} ({which}), "
            f"{features.shape[0]} x {features.shape[1]} in {time.perf_counter() - start:.1f} s, "
            f"cached to {path}"
        )
        return features, got

    def trunk(self, seed: int) -> torch.nn.Module:
        """The trunk, built once per splits_for call: with the run's seed, a random
        initialisation is the one the fine-tuning path starts from."""
        if self._trunk is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                trunk, _ = make_trunk(
                    self.cfg.backbone,
                    self.images.channels,
                    self.cfg.pretrained_weights,
                    self.cfg.googlenet_transform_input,
                )
            self._trunk = trunk.to(self.device)
        return self._trunk
