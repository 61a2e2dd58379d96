"""AnchorNeighborSampler: HTL's anchor-neighbour (A-N) batches (docs/method.md,
"Anchor-neighbour batches")."""

from __future__ import annotations

from typing import Iterator, Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import Sampler

from .._logging import warn_once
from .._validation import check_positive_int
from ..tree import HierarchicalClassTree, LabelFn, TreeBuilder, TreeRequirements, check_tree
from ..tree.distributed import world


def _labels_as_numpy(labels) -> np.ndarray:
    if torch.is_tensor(labels):
        labels = labels.detach().cpu().numpy()
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise TypeError(
            f"labels must hold integer class labels, got dtype {array.dtype}: "
            "pass them as integers, e.g. labels.long() or labels.astype(int)"
        )
    return array.astype(np.int64)


class AnchorNeighborSampler(Sampler[int]):
    """Flat index sampler whose consecutive chunks of l' m t indices are batches.

    Each batch: l' anchor classes drawn at random; for each, its m - 1
    nearest classes by d(p, q) (skipping classes already in the batch, so the
    batch always holds l' m distinct classes); then t images of each class,
    drawn with replacement only from classes smaller than t. Before a tree is
    given it draws l' m random classes, like PML's ``MPerClassSampler``.

    Use it as ``sampler=`` with ``DataLoader(batch_size=sampler.batch_size,
    drop_last=True)`` or in PML's trainers with the same ``batch_size``.

    Args:
        labels: the data set's class labels, one per sample.
        anchors_per_batch: l'.
        classes_per_anchor: m, the anchor class included (default 4, ours).
        samples_per_class: t (default 4, ours).
        tree: a `HierarchicalClassTree` knowing every class in
            ``labels``; ``update_tree`` replaces it.
        length_before_new_iter: indices per pass (default ``len(labels)``),
            rounded down to whole batches.
        seed: makes the batches reproducible (pass ``k`` of a run uses the
            generator seeded with (seed, k); see ``set_epoch``). ``None`` draws
            from torch's global generator.
        num_replicas, rank: distributed mode (default: from torch.distributed).
            Every rank draws the same global batches from the shared seed
            (rank 0's, broadcast when ``seed`` is None) and yields its own
            slice of l' m / num_replicas classes, t samples each; then
            ``batch_size`` is the per-rank batch and the gathered global batch
            is exactly an A-N batch. Call ``set_epoch`` on every rank.

    Example:
        >>> import numpy as np
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> import torch
        >>> from pml_htl import AnchorNeighborSampler, HierarchicalClassTree
        >>> labels = np.repeat(np.arange(16), 5)  # the data set's integer labels
        >>> sampler = AnchorNeighborSampler(labels, anchors_per_batch=2, seed=0)
        >>> sampler.batch_size  # l' m t = 2 x 4 x 4
        32
        >>> dataset = TensorDataset(torch.randn(80, 8), torch.as_tensor(labels))
        >>> tree = HierarchicalClassTree.from_embeddings(*dataset.tensors)
        >>> sampler.update_tree(tree)  # a TreeRebuildHook does this every epoch
        >>> loader = DataLoader(
        ...     dataset, batch_size=sampler.batch_size, sampler=sampler, drop_last=True
        ... )
        >>> data, batch_labels = next(iter(loader))
        >>> len(torch.unique(batch_labels))  # l' m classes, t samples each
        8
    """

    def __init__(
        self,
        labels: Union[Sequence[int], np.ndarray, torch.Tensor],
        anchors_per_batch: int,
        classes_per_anchor: int = 4,
        samples_per_class: int = 4,
        tree: Optional[HierarchicalClassTree] = None,
        length_before_new_iter: Optional[int] = None,
        seed: Optional[int] = None,
        num_replicas: Optional[int] = None,
        rank: Optional[int] = None,
    ):
        self.labels = _labels_as_numpy(labels)
        if self.labels.size == 0:
            raise ValueError("labels is empty: the sampler needs a non-empty data set")
        self.anchors_per_batch = check_positive_int(anchors_per_batch, "anchors_per_batch")
        self.classes_per_anchor = check_positive_int(classes_per_anchor, "classes_per_anchor")
        self.samples_per_class = check_positive_int(samples_per_class, "samples_per_class")
        if seed is not None:
            check_positive_int(seed, "seed", minimum=0)
        self.seed = seed
        self.epoch = 0
        self.classes, inverse = np.unique(self.labels, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.cumsum(np.bincount(inverse, minlength=len(self.classes)))[:-1]
        self.indices_per_class = np.split(order, bounds)
        self.classes_per_batch = self.anchors_per_batch * self.classes_per_anchor
        if self.classes_per_batch > len(self.classes):
            raise ValueError(
                f"anchors_per_batch * classes_per_anchor = {self.classes_per_batch} classes "
                f"per batch, but labels hold only {len(self.classes)} classes"
            )
        self.global_batch_size = self.classes_per_batch * self.samples_per_class
        default_rank, default_replicas = world()
        self.num_replicas = check_positive_int(
            default_replicas if num_replicas is None else num_replicas, "num_replicas"
        )
        self.rank = check_positive_int(default_rank if rank is None else rank, "rank", minimum=0)
        if self.rank >= self.num_replicas:
            raise ValueError(f"rank={self.rank} must be below num_replicas={self.num_replicas}")
        if self.classes_per_batch % self.num_replicas:
            raise ValueError(
                f"l' m = {self.classes_per_batch} classes per global batch cannot be split "
                f"evenly over num_replicas={self.num_replicas} ranks"
            )
        if self.num_replicas > 1 and self.seed is None:
            if world()[1] == 1:
                raise ValueError(
                    "seed is required for num_replicas > 1 outside a process group "
                    "(every rank must draw the same global batches)"
                )
            self.seed = _shared_seed()
        self.batch_size = self.global_batch_size // self.num_replicas
        if length_before_new_iter is None:
            length_before_new_iter = len(self.labels)
        check_positive_int(length_before_new_iter, "length_before_new_iter")
        if length_before_new_iter < self.global_batch_size:
            raise ValueError(
                f"length_before_new_iter={length_before_new_iter} is smaller than one "
                f"batch of l' m t = {self.global_batch_size} indices"
            )
        self.length_before_new_iter = length_before_new_iter
        self.neighbors: Optional[np.ndarray] = None
        self.tree: Optional[HierarchicalClassTree] = None
        #: set by the TreeRebuildHook that registers this sampler
        self.awaits_hook_tree = False
        if tree is not None:
            self.update_tree(tree)

    def requirements(self) -> TreeRequirements:
        """Its batches are whole only at ``batch_size`` (l' m t)."""
        return TreeRequirements(batch_size=self.batch_size)

    def attach(self, builder: Optional[TreeBuilder]) -> None:
        self.awaits_hook_tree = True

    def update_tree(
        self, tree: Optional[HierarchicalClassTree], label_fn: Optional[LabelFn] = None
    ) -> None:
        """Take each class's nearest classes at level 0 from ``tree`` (None:
        back to random classes per batch).

        Args:
            tree: the class tree.
            label_fn: maps this sampler's labels to the tree's labels, when the
                loss sees remapped labels (a PML trainer's
                ``set_min_label_to_zero``); the tree-rebuild hook passes it.
        """
        check_tree(tree)
        if tree is None:
            self.neighbors, self.tree = None, None
            return
        tree_classes = self.classes
        if label_fn is not None:
            tree_classes = _labels_as_numpy(label_fn(self.classes))
            if len(np.unique(tree_classes)) != len(self.classes):
                raise ValueError("label_fn must map the sampler's classes one to one")
        k = min(len(self.classes) - 1, self.classes_per_anchor - 1 + self.classes_per_batch)
        if k == 0:
            neighbors = np.zeros((len(self.classes), 0), dtype=np.int64)
        else:
            classes = torch.as_tensor(tree_classes, device=tree.device)
            nearest = tree.nearest_classes(classes, k, candidates=classes).cpu().numpy()
            order = np.argsort(tree_classes)
            neighbors = order[np.searchsorted(tree_classes, nearest, sorter=order)]
        self.neighbors, self.tree = neighbors, tree

    def clear_tree(self) -> None:
        """Forget the tree: back to random classes per batch."""
        self.update_tree(None)

    def set_epoch(self, epoch: int) -> None:
        """Select the pass whose batches the next ``__iter__`` yields (with ``seed``)."""
        self.epoch = check_positive_int(epoch, "epoch", minimum=0)

    def __len__(self) -> int:
        """Indices this rank yields per pass: whole (per-rank) batches."""
        return (self.length_before_new_iter // self.global_batch_size) * self.batch_size

    def _generator(self) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng(int(torch.randint(2**62, (1,))))
        return np.random.default_rng([self.seed, self.epoch])

    def _batch_classes(self, rng: np.random.Generator) -> np.ndarray:
        num_classes = len(self.classes)
        if self.neighbors is None:
            return rng.choice(num_classes, self.classes_per_batch, replace=False)
        used = np.zeros(num_classes, dtype=bool)
        chosen = []
        for _ in range(self.anchors_per_batch):
            anchor = int(rng.integers(num_classes))
            while used[anchor]:
                anchor = int(rng.integers(num_classes))
            used[anchor] = True
            chosen.append(anchor)
            added = 0
            for neighbor in self.neighbors[anchor]:
                if added == self.classes_per_anchor - 1:
                    break
                if not used[neighbor]:
                    used[neighbor] = True
                    chosen.append(int(neighbor))
                    added += 1
        return np.asarray(chosen)

    def __iter__(self) -> Iterator[int]:
        if self.neighbors is None and self.awaits_hook_tree:
            warn_once(
                self,
                "no hook tree",
                "AnchorNeighborSampler is registered with a TreeRebuildHook that has not "
                "built a tree yet, so this pass draws random classes: call the hook once "
                "before training (hook(trainer) with PML's trainers, hook.rebuild(model) "
                "in a hand-written loop)",
            )
        rng = self._generator()
        self.epoch += 1
        t = self.samples_per_class
        share = self.classes_per_batch // self.num_replicas
        mine = slice(self.rank * share, (self.rank + 1) * share)
        out = np.empty(len(self), dtype=np.int64)
        for b in range(len(self) // self.batch_size):
            pos = b * self.batch_size
            # every rank draws the whole global batch, so the generators stay in step
            for i, c in enumerate(self._batch_classes(rng)):
                members = self.indices_per_class[c]
                drawn = rng.choice(members, t, replace=len(members) < t)
                if mine.start <= i < mine.stop:
                    out[pos : pos + t] = drawn
                    pos += t
        return iter(out.tolist())


def _shared_seed() -> int:
    """A random seed drawn on rank 0 and broadcast to every rank."""
    seed = torch.randint(2**62, (1,))
    if torch.distributed.get_backend() == "nccl":
        seed = seed.cuda()
    torch.distributed.broadcast(seed, src=0)
    return int(seed.item())
