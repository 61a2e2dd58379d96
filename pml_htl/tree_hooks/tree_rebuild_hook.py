"""TreeRebuildHook: rebuild the class tree from the current model every epoch."""

from __future__ import annotations

import contextlib
import inspect
import time
from typing import Any, Callable, Dict, Iterator, List, Optional

import numpy as np
import torch
import tqdm
from pytorch_metric_learning.utils import common_functions as c_f
from torch.utils.data import DataLoader, Dataset, Subset

from .._logging import LOGGER, show_progress, warn_once
from .._validation import check_positive_int
from ..tree import ClassStatistics, HierarchicalClassTree, resolve_tree_options
from ..tree.distributed import (
    all_reduce_statistics,
    check_same_tree,
    combine_rank_statistics,
    world,
)

#: Where a rebuild takes the class statistics from: an extra pass embedding the
#: data set (the paper's), or the embeddings the loss saw in the epoch's steps.
STATISTICS_SOURCES = ("inference", "training")


def _takes_label_fn(consumer) -> bool:
    """Consumers indexed by the data set's own labels (the sampler) need the
    map to the labels the loss sees."""
    return "label_fn" in inspect.signature(consumer.update_tree).parameters


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
    training to build the initial tree from the (pre-trained) model: the
    registered consumers warn when they are used before that.

    Each rebuild embeds the whole data set in eval mode under ``no_grad``,
    restores every submodule's previous mode, builds the tree on the model's
    device from the class statistics, logs one line (logger "pml_htl", INFO)
    and hands the tree to every registered consumer (loss, miner, sampler:
    anything with ``update_tree``). Registering a loss turns its drop-in
    updates off. Under torch.distributed each rank embeds its shard of the
    data set (every sample once), the class statistics are summed across ranks
    in one all-reduce, and the ranks' trees are checked to be identical.

    With ``statistics_from="training"`` there is no extra pass after the first
    tree: the registered :class:`~pml_htl.losses.HierarchicalTripletLoss`
    gathers the statistics of the (detached, normalised as its distance does)
    embeddings of every training step, and each rebuild takes them. So a tree
    mixes embeddings from the start of the epoch with later ones, counts a
    sample as often as the sampler drew it, and sees the training view
    (augmented, in train mode). A class no step drew since the last rebuild
    keeps the statistics it has in the loss's current tree. The first tree
    (when the loss has none yet) still comes from an embedding pass: before
    training there are no training embeddings, and the sampler needs every
    class in the tree. Under torch.distributed the ranks' gathered statistics
    are combined as in the loss's drop-in mode (the mean when every rank saw
    the gathered global batch, the sum otherwise).

    Args:
        dataset: the training set without training augmentation, giving
            (data, label) items in the same label space as the training set.
        consumers: objects with ``update_tree(tree)``.
        batch_size, num_workers, collate_fn: for the embedding pass.
        normalize: L2-normalise embeddings before the statistics (default: as
            the first consumer's distance does, else True).
        num_levels, linkage, level_start: the tree's options (L and the open
            choices of the paper, see :class:`~pml_htl.HierarchicalClassTree`).
            By default those of the registered loss; a loss built with other
            options is refused, naming the option.
        data_and_label_getter: maps a collated batch to (data, labels).
        progress: a progress bar over the embedding pass; by default only when
            stderr is a terminal and ``TQDM_DISABLE`` is not set.
        statistics_from: ``"inference"`` (default, the paper's): every rebuild
            embeds ``dataset``; ``"training"``: rebuilds after the first take
            the statistics a registered HierarchicalTripletLoss gathered from
            the training steps (exactly one must be registered).
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
        self.tree_options = resolve_tree_options(given)
        # where each option came from: None (a default) may still be taken from a loss
        self._option_sources: Dict[str, Optional[str]] = {
            name: (None if value is None else "this hook's arguments")
            for name, value in given.items()
        }
        self.data_and_label_getter = data_and_label_getter or _default_getter
        self.collate_fn = collate_fn
        self.progress = progress
        self.statistics_from = statistics_from
        self.consumers: List[Any] = []
        self.tree: Optional[HierarchicalClassTree] = None
        self.num_rebuilds = 0
        self.register(*consumers)

    def register(self, *consumers) -> "TreeRebuildHook":
        """Add consumers; a loss's drop-in updates are turned off, and the hook
        builds its trees with the loss's tree options. With
        ``statistics_from="training"`` the loss gathers statistics for the hook."""
        for consumer in consumers:
            if not callable(getattr(consumer, "update_tree", None)):
                raise TypeError(
                    "consumers must have an update_tree(tree) method, got "
                    f"{type(consumer).__name__}"
                )
        options, sources = dict(self.tree_options), dict(self._option_sources)
        for consumer in consumers:
            _adopt_tree_options(options, sources, consumer)
        if self.statistics_from == "training":
            self._check_gatherers(self.consumers + list(consumers), required=False)
        self.tree_options, self._option_sources = options, sources
        for consumer in consumers:
            if getattr(consumer, "drop_in", False):
                consumer.disable_drop_in()
            if self.statistics_from == "training" and _gathers(consumer):
                consumer.gather_statistics()
            consumer.awaits_hook_tree = True
            self.consumers.append(consumer)
        return self

    def _check_gatherers(self, consumers, required: bool = True):
        """The one consumer whose training-step statistics the trees come from."""
        gatherers = [c for c in consumers if _gathers(c)]
        if len(gatherers) > 1:
            raise ValueError(
                "statistics_from='training' takes the training statistics of one registered "
                f"loss, got {len(gatherers)}: register only the loss the trainer uses"
            )
        if not gatherers:
            if required:
                raise ValueError(
                    "statistics_from='training' builds trees from the statistics a registered "
                    "HierarchicalTripletLoss gathers in the training steps, and none is "
                    "registered: register the loss (the inner loss of a wrapper), or use "
                    "statistics_from='inference'"
                )
            return None
        normalize = bool(gatherers[0].distance.normalize_embeddings)
        if self.normalize is not None and self.normalize != normalize:
            raise ValueError(
                f"normalize={self.normalize} but the registered "
                f"{type(gatherers[0]).__name__} gathers statistics with "
                f"normalize_embeddings={normalize}: with statistics_from='training' every "
                "tree must use the loss's normalisation (leave normalize=None)"
            )
        return gatherers[0]

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
        self._check_trainer(trainer)
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

    def _check_trainer(self, trainer) -> None:
        """The trainer must use the registered sampler with its batch size, and
        the registered losses."""
        for consumer in self.consumers:
            batch_size = getattr(consumer, "batch_size", None)
            if not isinstance(consumer, torch.utils.data.Sampler) or batch_size is None:
                continue
            if trainer.sampler is not consumer:
                warn_once(
                    self,
                    "sampler",
                    f"a {type(consumer).__name__} is registered with this TreeRebuildHook but "
                    "the trainer uses another sampler: pass the registered one as sampler=",
                )
            elif trainer.batch_size != batch_size:
                raise ValueError(
                    f"the trainer's batch_size is {trainer.batch_size} but the registered "
                    f"{type(consumer).__name__} yields batches of {batch_size} (l' m t): pass "
                    "batch_size=sampler.batch_size to the trainer, or its batches split the "
                    "anchor-neighbour groups"
                )
        used = [getattr(f, "loss", f) for f in trainer.loss_funcs.values()]
        used += [getattr(f, "miner", f) for f in (trainer.mining_funcs or {}).values()]
        for consumer in self.consumers:
            if isinstance(consumer, torch.nn.Module) and not any(consumer is f for f in used):
                warn_once(
                    self,
                    f"unused {id(consumer)}",
                    f"a {type(consumer).__name__} is registered with this TreeRebuildHook but "
                    "is not among the trainer's loss_funcs or mining_funcs: the trainer's own "
                    "loss never receives the tree",
                )

    def rebuild(
        self,
        model: torch.nn.Module,
        label_fn: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        device: Optional[torch.device] = None,
    ) -> HierarchicalClassTree:
        """Rebuild from ``model`` (data -> embeddings) in a hand-written loop.

        With ``statistics_from="training"``, ``model`` embeds the data set for
        the first tree only; later trees come from the loss's training steps.

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
        gatherer = None
        if self.statistics_from == "training":
            gatherer = self._check_gatherers(self.consumers)
        if gatherer is not None and gatherer.tree is not None:
            statistics, source = self._training_statistics(gatherer)
        else:  # the steps before a first tree (if any) are not used
            start = time.perf_counter()
            statistics = self._embedded_statistics(models, embed, label_fn, getter)
            embedding_seconds = time.perf_counter() - start
            if world()[1] > 1:
                statistics = all_reduce_statistics(statistics, self._class_index(label_fn))
            statistics = statistics.nonempty()
            source = f"embedded {int(statistics.counts.sum())} samples in {embedding_seconds:.2f} s"
        tree = HierarchicalClassTree(statistics, **self.tree_options)
        check_same_tree(tree)
        self._hand_out(tree, sampler_label_fn)
        if gatherer is not None:
            gatherer.take_statistics()  # only now: a refused tree leaves them in place
        LOGGER.info("tree rebuild %d: %s; %s", self.num_rebuilds, source, tree.summary())
        return tree

    def _training_statistics(self, gatherer):
        """The statistics the loss gathered since the last rebuild, combined
        across ranks, with its current tree's for the classes they lack."""
        previous = gatherer.tree.statistics
        gathered = gatherer.statistics
        if gathered is None:  # no training step: every class keeps its statistics
            gathered = ClassStatistics.empty(previous.embedding_size, previous.device)
        gathered = combine_rank_statistics(gathered).nonempty()
        statistics = gathered.with_missing_from(previous)
        kept = statistics.num_classes - gathered.num_classes
        source = (
            f"statistics of {int(gathered.counts.sum())} training-step embeddings, "
            f"{kept} unseen classes kept from the previous tree"
        )
        return statistics, source

    def _embedded_statistics(self, models, embed, label_fn, getter) -> ClassStatistics:
        """Class statistics of this rank's share of the data set."""
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
        statistics = None
        normalize = self._normalize()
        with evaluation_mode(*models), torch.no_grad():
            batches = tqdm.tqdm(
                loader,
                desc="HTL tree: embedding",
                disable=not show_progress(self.progress),
                leave=False,
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
        return statistics

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


def _gathers(consumer) -> bool:
    """Whether ``consumer`` can gather statistics from the training steps (the loss)."""
    return callable(getattr(consumer, "gather_statistics", None)) and callable(
        getattr(consumer, "take_statistics", None)
    )


def _adopt_tree_options(options: Dict[str, Any], sources: Dict[str, Optional[str]], consumer):
    """Take a consumer's tree options where the hook has only defaults; raise,
    naming the option, where they conflict with options already fixed."""
    for name, value in (getattr(consumer, "tree_options", None) or {}).items():
        if sources[name] is None:
            options[name], sources[name] = value, f"the registered {type(consumer).__name__}"
        elif options[name] != value:
            raise ValueError(
                f"{type(consumer).__name__} uses {name}={value!r}, but this TreeRebuildHook "
                f"builds trees with {name}={options[name]!r} (from {sources[name]}): give "
                f"both the same {name}"
            )


def chain_hooks(*hooks: Optional[Callable]) -> Callable:
    """One ``end_of_epoch_hook`` calling each hook in turn; it returns False
    (stop training) when any of them does. ``None`` entries are skipped, as PML's
    trainers skip a ``None`` hook (PML's ``EmptyContainer``, the hook container
    without record-keeper, gives one)."""
    for hook in hooks:
        if hook is not None and not callable(hook):
            raise TypeError(f"hooks must be callables or None, got {type(hook).__name__}")
    hooks = tuple(h for h in hooks if h is not None)

    def chained(trainer) -> bool:
        results = [hook(trainer) for hook in hooks]
        return not any(r is False for r in results)

    return chained
