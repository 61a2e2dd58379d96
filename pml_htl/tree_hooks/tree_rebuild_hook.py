"""TreeRebuildHook: rebuild the class tree from the current model every epoch."""

from __future__ import annotations

import time
from typing import Callable, List, Optional

import torch
from torch.utils.data import Dataset

from .._compat import to_device
from .._logging import LOGGER
from .._validation import check_positive_int
from ..tree import (
    ClassStatistics,
    HierarchicalClassTree,
    TreeBuilder,
    TreeConsumer,
    resolve_tree_options,
)
from ..tree.distributed import all_reduce_statistics, world
from . import pml_trainer
from .embedding_pass import class_index, default_getter, embedded_statistics
from .registration import Registration

#: Where a rebuild takes the class statistics from: an extra pass embedding the
#: data set (the paper's), or the embeddings the loss saw in the epoch's steps.
STATISTICS_SOURCES = ("inference", "training")


class TreeRebuildHook:
    """Builds the class tree of the training set and hands it to the loss,
    the miner and the sampler: before training, and after every epoch.

    Each rebuild embeds the whole ``dataset`` with the model in eval mode under
    ``no_grad`` (every submodule's mode is restored after), sums the class
    statistics, builds the tree on the model's device through its
    `TreeBuilder`, logs one line (logger "pml_htl",
    INFO) and hands the tree to every registered
    `TreeConsumer` (all of them take it, or none). A
    registered loss leaves drop-in mode. Under torch.distributed each rank
    embeds its shard, the statistics are summed in one all-reduce, and the
    ranks' trees are checked to be identical.

    With ``statistics_from="training"`` only the first tree needs that pass:
    the registered loss feeds the hook's builder the statistics of the
    (detached) embeddings of every training step, and each later rebuild
    takes them; a class no step drew keeps its statistics from the previous
    tree. Such a tree mixes embeddings from across the epoch and sees the
    training view (augmented, in train mode).

    Args:
        dataset: the training set **without training augmentation**, giving
            (data, int label) items in the loss's label space, with
            ``.labels`` listing the labels where possible.
        consumers: the loss, miner and sampler (any
            `TreeConsumer`).
        batch_size, num_workers, collate_fn: for the embedding pass.
        normalize: L2-normalise embeddings before the statistics (default: as
            the loss's distance does, else True).
        num_levels, linkage, level_start: the tree's options (default: the
            registered loss's; a loss with other options is refused).
        data_and_label_getter: maps a collated batch to (data, labels).
        progress: a progress bar over the pass (default: only when stderr is
            a terminal and ``TQDM_DISABLE`` is not set).
        statistics_from: ``"inference"`` (default, the paper's) or ``"training"``.

    Example:
        >>> import numpy as np, torch
        >>> from torch.utils.data import TensorDataset
        >>> from pml_htl import AnchorNeighborSampler, HierarchicalTripletLoss, TreeRebuildHook
        >>> labels = torch.arange(8).repeat_interleave(4)  # int64 class labels
        >>> train_set = TensorDataset(torch.randn(32, 6), labels)  # no augmentation
        >>> train_set.labels = labels.numpy()
        >>> model = torch.nn.Linear(6, 4)
        >>> loss_func = HierarchicalTripletLoss()
        >>> sampler = AnchorNeighborSampler(train_set.labels, anchors_per_batch=2, seed=0)
        >>> hook = TreeRebuildHook(train_set, consumers=[loss_func, sampler], progress=False)
        >>> tree = hook.rebuild(model)  # before training, and after every epoch
        >>> loss_func.tree is tree and sampler.tree is tree
        True

        With a PML 2 trainer, pass the hook (chained with others through
        `chain_hooks`) as ``end_of_epoch_hook`` and call
        ``hook(trainer)`` once before ``trainer.train()``.
    """

    def __init__(
        self,
        dataset: Dataset,
        consumers=(),
        batch_size: int = 256,
        num_workers: int = 0,
        normalize: Optional[bool] = None,
        num_levels: Optional[int] = None,
        linkage: Optional[str] = None,
        level_start: Optional[int] = None,
        data_and_label_getter: Optional[Callable] = None,
        collate_fn: Optional[Callable] = None,
        progress: Optional[bool] = None,
        statistics_from: str = "inference",
    ):
        if not isinstance(statistics_from, str):
            raise TypeError(
                f"statistics_from must be a str, one of {STATISTICS_SOURCES}, got "
                f"{type(statistics_from).__name__}"
            )
        if statistics_from not in STATISTICS_SOURCES:
            raise ValueError(
                f"statistics_from must be one of {STATISTICS_SOURCES}, got {statistics_from!r}"
            )
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise TypeError(f"dataset must be a map-style Dataset, got {type(dataset).__name__}")
        if len(dataset) == 0:
            raise ValueError("dataset is empty: the tree needs the training set's embeddings")
        self.dataset = dataset
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.num_workers = check_positive_int(num_workers, "num_workers", minimum=0)
        self.normalize = normalize
        given = dict(num_levels=num_levels, linkage=linkage, level_start=level_start)
        options = resolve_tree_options(given)
        self.data_and_label_getter = data_and_label_getter or default_getter
        self.collate_fn = collate_fn
        self.progress = progress
        self.statistics_from = statistics_from
        #: builds every tree; fed by the registered loss with statistics_from="training"
        self.builder = TreeBuilder(options, True if normalize is None else normalize)
        self._registration = Registration(given, options, statistics_from, normalize)
        self.tree: Optional[HierarchicalClassTree] = None
        self.num_rebuilds = 0
        self.register(*consumers)

    @property
    def consumers(self) -> List[TreeConsumer]:
        return list(self._registration.consumers)

    @property
    def tree_options(self):
        """num_levels, linkage and level_start of the trees this hook builds."""
        return dict(self._registration.tree_options)

    def register(self, *consumers: TreeConsumer) -> "TreeRebuildHook":
        """Add consumers (all or none): the hook builds its trees with the
        registered loss's tree options and normalisation, and a loss leaves
        drop-in mode (with ``statistics_from="training"`` it feeds
        `builder`)."""
        self._registration.add(consumers, self.builder)
        return self

    def __call__(self, trainer) -> bool:
        """PML 2 ``end_of_epoch_hook``: rebuild from the trainer's models and labels."""
        registration = self._registration
        pml_trainer.check_trainer(self, trainer, registration.consumers, registration.requirements)
        labels_of, sampler_labels_of = pml_trainer.trainer_label_fns(trainer)
        getter = trainer.data_and_label_getter or self.data_and_label_getter
        models = pml_trainer.trainer_models(trainer)
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
            return model(to_device(data, device))

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
        feeder = self._registration.feeder()
        previous = None if feeder is None else feeder.tree
        if previous is not None:
            statistics, source = self.builder.statistics_since(previous)
        else:  # the steps before a first tree (if any) are not used
            start = time.perf_counter()
            statistics = self._embedded_statistics(models, embed, label_fn, getter)
            embedding_seconds = time.perf_counter() - start
            if world()[1] > 1:
                index = class_index(self.dataset, label_fn)
                statistics = all_reduce_statistics(statistics, index)
            statistics = statistics.nonempty()
            source = f"embedded {int(statistics.counts.sum())} samples in {embedding_seconds:.2f} s"
        tree = self.builder.build(statistics)
        self._registration.hand_out(tree, sampler_label_fn)
        self.tree = tree
        self.num_rebuilds += 1
        if feeder is not None:
            self.builder.take_statistics()  # only now: a refused tree leaves them in place
        LOGGER.info("tree rebuild %d: %s; %s", self.num_rebuilds, source, tree.summary())
        return tree

    def _embedded_statistics(self, models, embed, label_fn, getter) -> ClassStatistics:
        """Class statistics of this rank's share of the data set."""
        return embedded_statistics(
            self.dataset, models, embed, label_fn, getter, self.builder.normalize,
            self.batch_size, self.num_workers, self.collate_fn, self.progress,
        )  # fmt: skip
