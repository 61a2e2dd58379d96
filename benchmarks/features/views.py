"""Data sets whose items are a frozen trunk's features: the clean view of each image,
or one of its K cached augmented views, drawn at random at every draw."""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset


class FeatureSet(Dataset):
    """(features[i], label[i]) items, with ``labels`` listed as the tree hook and
    the samplers read them."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor):
        if len(features) != len(labels):
            raise ValueError(f"{len(features)} feature rows for {len(labels)} labels")
        self.features = features
        self.labels = np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, int]:
        return self.features[i], int(self.labels[i])


class FeatureViews(FeatureSet):
    """A training image's item is one of its K augmented views' features, chosen
    at random at every draw by torch's generator (so the run's seed decides the
    choices, and DataLoader workers draw from their own seeded generators).

    Args:
        views: (K, N, d) features of K augmented views of every image.
        labels: (N,) labels.
    """

    def __init__(self, views: torch.Tensor, labels: torch.Tensor):
        if views.dim() != 3 or views.shape[0] < 1:
            raise ValueError(f"views must be (K, N, d) with K >= 1, got {tuple(views.shape)}")
        super().__init__(views[0], labels)
        self.views = views

    @property
    def num_views(self) -> int:
        return self.views.shape[0]

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, int]:
        k = int(torch.randint(self.num_views, ()))
        return self.views[k, i], int(self.labels[i])


def training_set(clean: FeatureSet, views: Optional[torch.Tensor]) -> FeatureSet:
    """What the training steps draw from: the clean features, or K augmented views."""
    if views is None:
        return clean
    return FeatureViews(views, torch.as_tensor(clean.labels))
