"""TreeRebuildHook: rebuild the class tree from the current model every epoch."""

from __future__ import annotations

import inspect
from typing import Any, Callable, List, Optional

import numpy as np
import torch
import tqdm
from pytorch_metric_learning.utils import common_functions as c_f
from torch.utils.data import DataLoader, Dataset, Subset

from ..tree import ClassStatistics, HierarchicalClassTree, check_tree_options
from ..utils.distributed import all_reduce_statistics, check_same_tree, world
from ..utils.validation import check_positive_int


def _takes_label_fn(consumer) -> bool:
    """Consumers indexed by the data set's own labels (the sampler) need the
    map to the labels the loss sees."""
    return "label_fn" in inspect.signature(consumer.update_tree).parameters


def _default_getter(batch):
    if isinstance(batch, (list, tuple)) and len(batch) >= 2:
        return batch[0], batch[1]
    raise TypeError(
        "dataset items must be (data, label) pairs; pass data_and_label_getter for other layouts"
    )


class TreeRebuildHook:
    """Embeds an evaluation view of the training set and rebuilds the tree.

    Usable as a PML trainer's ``end_of_epoch_hook(trainer)`` (chain it with
    ``HookContainer.end_of_epoch_hook(...)`` through :func:`chain_hooks`), or
    in a hand-written loop through :meth:`rebuild`. Call it once before
    training to build the initial tree from the (pre-trained) model.

    Each rebuild embeds the whole data set in eval mode under ``no_grad``,
    restores every model's previous mode, builds the tree on the model's
    device from the class statistics, and hands the tree to every registered
    consumer (loss, miner, sampler: anything with ``update_tree``). Registering
    a loss turns its drop-in updates off. Under torch.distributed each rank
    embeds its shard of the data set (every sample once), the class
    statistics are summed across ranks in one all-reduce, and the ranks'
    trees are checked to be identical.

    Args:
        dataset: the training set without training augmentation, giving
            (data, label) items in the same label space as the training set.
        consumers: objects with ``update_tree(tree)``.
        batch_size, num_workers, collate_fn: for the embedding pass.
        normalize: L2-normalise embeddings before the statistics (default: as
            the first consumer's distance does, else True).
        num_levels, linkage, level_start: the tree's options (L and the open
            choices of the paper, see :class:`~pml_htl.HierarchicalClassTree`).
        data_and_label_getter: maps a collated batch to (data, labels).
        progress: show a tqdm bar over the embedding pass.
    """

    def __init__(
        self,
        dataset: Dataset,
        consumers=(),
        batch_size: int = 256,
        num_workers: int = 0,
        normalize: Optional[bool] = None,
        num_levels: int = 16,
        linkage: str = "average",
        level_start: int = 0,
        data_and_label_getter: Optional[Callable] = None,
        collate_fn: Optional[Callable] = None,
        progress: bool = True,
    ):
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise TypeError(f"dataset must be a map-style Dataset, got {type(dataset).__name__}")
        if len(dataset) == 0:
            raise ValueError("dataset is empty: the tree needs the training set's embeddings")
        self.dataset = dataset
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.num_workers = check_positive_int(num_workers, "num_workers", minimum=0)
        self.normalize = normalize
        check_tree_options(num_levels, linkage, level_start)
        self.tree_options = dict(num_levels=num_levels, linkage=linkage, level_start=level_start)
        self.data_and_label_getter = data_and_label_getter or _default_getter
        self.collate_fn = collate_fn
        self.progress = progress
        self.consumers: List[Any] = []
        self.tree: Optional[HierarchicalClassTree] = None
        self.num_rebuilds = 0
        self.register(*consumers)

    def register(self, *consumers) -> "TreeRebuildHook":
        """Add consumers; a loss's drop-in updates are turned off."""
        for consumer in consumers:
            if not callable(getattr(consumer, "update_tree", None)):
                raise TypeError(
                    "consumers must have an update_tree(tree) method, got "
                    f"{type(consumer).__name__}"
                )
        for consumer in consumers:
            if getattr(consumer, "drop_in", False):
                consumer.disable_drop_in()
            self.consumers.append(consumer)
        return self

    def _normalize(self) -> bool:
        if self.normalize is not None:
            return self.normalize
        for consumer in self.consumers:
            distance = getattr(consumer, "distance", None)
            if distance is not None:
                return bool(distance.normalize_embeddings)
        return True

    def __call__(self, trainer) -> bool:
        """PML ``end_of_epoch_hook``: rebuild from the trainer's models and labels."""
        models = [trainer.models["trunk"], trainer.models["embedder"]]
        level = trainer.label_hierarchy_level

        def labels_of(labels):
            return c_f.process_label(labels, level, trainer.label_mapper)

        def sampler_labels_of(classes):
            # the sampler holds 1-D labels of the trained level, not batch labels
            if not isinstance(level, int):
                raise ValueError(
                    "an AnchorNeighborSampler needs a single label_hierarchy_level, "
                    f"the trainer uses {level!r}"
                )
            return trainer.label_mapper(np.asarray(classes), level)

        getter = trainer.data_and_label_getter or self.data_and_label_getter
        self._rebuild(models, trainer.compute_embeddings, labels_of, getter, sampler_labels_of)
        return True

    def rebuild(
        self,
        model: torch.nn.Module,
        label_fn: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        device: Optional[torch.device] = None,
    ) -> HierarchicalClassTree:
        """Rebuild from ``model`` (data -> embeddings) in a hand-written loop.

        Args:
            model: maps a batch of data to embeddings.
            label_fn: maps the data set's labels to the labels the loss sees.
            device: where to put the data (default: the model's parameters').
        """
        if device is None:
            param = next(iter(model.parameters()), None)
            device = param.device if param is not None else torch.device("cpu")

        def embed(data):
            return model(c_f.to_device(data, device=device))

        sampler_labels_of = None
        if label_fn is not None:

            def sampler_labels_of(classes):
                return torch.as_tensor(label_fn(torch.as_tensor(classes))).cpu().numpy()

        return self._rebuild(
            [model], embed, label_fn, self.data_and_label_getter, sampler_labels_of
        )

    def _rebuild(
        self, models, embed, label_fn, getter, sampler_label_fn=None
    ) -> HierarchicalClassTree:
        rank, size = world()
        dataset = self.dataset
        if size > 1:
            # each rank embeds its own shard; no padding, so no sample counts twice
            if len(dataset) < size:
                raise ValueError(f"dataset has {len(dataset)} samples for {size} ranks")
            dataset = Subset(dataset, range(rank, len(dataset), size))
        loader = DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=self.collate_fn,
        )
        # every submodule's mode, so a frozen BatchNorm stays frozen
        modes = [(module, module.training) for m in models for module in m.modules()]
        statistics = None
        normalize = self._normalize()
        try:
            for m in models:
                m.eval()
            with torch.no_grad():
                batches = tqdm.tqdm(
                    loader, desc="HTL tree: embedding", disable=not self.progress, leave=False
                )
                for batch in batches:
                    data, labels = getter(batch)
                    if label_fn is not None:
                        labels = label_fn(labels)
                    embeddings = embed(data)
                    labels = torch.as_tensor(labels).to(embeddings.device)
                    if statistics is None:
                        statistics = self._empty_statistics(label_fn, embeddings)
                    statistics.update(embeddings, labels, normalize)
        finally:
            for module, mode in modes:
                module.training = mode
        if size > 1:
            statistics = all_reduce_statistics(statistics, self._class_index(label_fn))
        tree = HierarchicalClassTree(statistics.nonempty(), **self.tree_options)
        check_same_tree(tree)
        self._hand_out(tree, sampler_label_fn)
        return tree

    def _empty_statistics(self, label_fn, embeddings: torch.Tensor) -> ClassStatistics:
        index = self._class_index(label_fn)
        if index is None:
            return ClassStatistics.empty(embeddings.shape[1], embeddings.device)
        return ClassStatistics.zeros(index, embeddings.shape[1], embeddings.device)

    def _class_index(self, label_fn) -> Optional[torch.Tensor]:
        """The class index every rank shares: the data set's labels as the loss
        sees them (None when the data set does not list its labels)."""
        labels = getattr(self.dataset, "labels", None)
        if labels is None:
            return None
        labels = torch.as_tensor(np.asarray(labels))
        if label_fn is not None:
            labels = torch.as_tensor(np.asarray(label_fn(labels)))
        return torch.unique(labels.long())

    def _hand_out(self, tree: HierarchicalClassTree, label_fn=None) -> None:
        """Give ``tree`` to every consumer, or to none if one of them refuses it."""
        # update_tree only rebinds attributes, so a shallow copy of each
        # consumer's attributes is a complete snapshot
        snapshots = [dict(vars(c)) for c in self.consumers]
        try:
            for consumer in self.consumers:
                if label_fn is not None and _takes_label_fn(consumer):
                    consumer.update_tree(tree, label_fn=label_fn)
                else:
                    consumer.update_tree(tree)
        except Exception:
            for consumer, snapshot in zip(self.consumers, snapshots):
                state = vars(consumer)
                state.clear()
                state.update(snapshot)
            raise
        self.tree = tree
        self.num_rebuilds += 1


def chain_hooks(*hooks: Callable) -> Callable:
    """One ``end_of_epoch_hook`` calling each hook in turn; it returns False
    (stop training) when any of them does."""

    def chained(trainer) -> bool:
        results = [hook(trainer) for hook in hooks]
        return not any(r is False for r in results)

    return chained
