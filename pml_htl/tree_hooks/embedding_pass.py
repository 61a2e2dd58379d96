"""The hook's pass over the training set: embeddings in eval mode, summed per class."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import torch
import tqdm
from torch.utils.data import DataLoader, Dataset, Subset

from .._logging import show_progress
from ..tree import ClassStatistics
from ..tree.distributed import world


@contextlib.contextmanager
def evaluation_mode(*models: torch.nn.Module) -> Iterator[None]:
    """Every model in eval mode inside the block; afterwards each submodule gets
    back its own previous mode (so a frozen BatchNorm in a training model stays
    frozen)."""
    modes = [(module, module.training) for m in models for module in m.modules()]
    try:
        for m in models:
            m.eval()
        yield
    finally:
        for module, mode in modes:
            module.training = mode


def default_getter(batch):
    """(data, labels) of a collated batch of (data, label) items."""
    if isinstance(batch, (list, tuple)) and len(batch) >= 2:
        return batch[0], batch[1]
    raise TypeError(
        "dataset items must be (data, label) pairs; pass data_and_label_getter for other layouts"
    )


def class_index(dataset: Dataset, label_fn: Optional[Callable]) -> Optional[torch.Tensor]:
    """The class index every rank shares: the data set's ``labels`` as the loss
    sees them (None when the data set does not list its labels)."""
    labels = getattr(dataset, "labels", None)
    if labels is None:
        return None
    labels = torch.as_tensor(np.asarray(labels))
    if label_fn is not None:
        labels = torch.as_tensor(np.asarray(label_fn(labels)))
    return torch.unique(labels.long())


def _integer_labels(labels, device: torch.device) -> torch.Tensor:
    labels = torch.as_tensor(labels)
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise TypeError(
            f"the data set given to the TreeRebuildHook yields labels of dtype {labels.dtype}: "
            "class labels must be integers; make its items (data, int label), e.g. "
            "label.long(), or map them with label_fn / data_and_label_getter"
        )
    return labels.to(device)


def embedded_statistics(
    dataset: Dataset,
    models: Sequence[torch.nn.Module],
    embed: Callable,
    label_fn: Optional[Callable],
    getter: Callable,
    normalize: bool,
    batch_size: int,
    num_workers: int = 0,
    collate_fn: Optional[Callable] = None,
    progress: Optional[bool] = None,
) -> ClassStatistics:
    """Class statistics of this rank's share of ``dataset``, embedded by
    ``embed`` with every model in eval mode, under ``no_grad``."""
    index = class_index(dataset, label_fn)
    rank, size = world()
    if size > 1:
        # each rank embeds its own shard; no padding, so no sample counts twice
        if len(dataset) < size:
            raise ValueError(f"dataset has {len(dataset)} samples for {size} ranks")
        dataset = Subset(dataset, range(rank, len(dataset), size))
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate_fn,
    )
    statistics = None
    with evaluation_mode(*models), torch.no_grad():
        batches = tqdm.tqdm(
            loader, desc="HTL tree: embedding", disable=not show_progress(progress), leave=False
        )
        for batch in batches:
            data, labels = getter(batch)
            if label_fn is not None:
                labels = label_fn(labels)
            embeddings = embed(data)
            labels = _integer_labels(labels, embeddings.device)
            if statistics is None:
                D, device = embeddings.shape[1], embeddings.device
                statistics = (
                    ClassStatistics.empty(D, device)
                    if index is None
                    else ClassStatistics.zeros(index, D, device)
                )
            statistics.update(embeddings, labels, normalize)
    return statistics
