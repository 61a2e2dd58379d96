"""TreeRebuildHook as a PML 2 trainer's ``end_of_epoch_hook`` (PML 3 has no trainers)."""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .._compat import trainer_labels
from .._logging import warn_once
from ..tree import TreeConsumer, TreeRequirements


def trainer_label_fns(trainer) -> Tuple[Callable, Callable]:
    """(batch labels -> the loss's labels, the sampler's classes -> the loss's
    labels) under the trainer's ``label_hierarchy_level`` and label mapper."""
    level = trainer.label_hierarchy_level

    def labels_of(labels):
        return trainer_labels(labels, trainer)

    def sampler_labels_of(classes):
        # the sampler holds 1-D labels of the trained level, not batch labels
        if not isinstance(level, int):
            raise ValueError(
                "an AnchorNeighborSampler needs a single label_hierarchy_level, "
                f"the trainer uses {level!r}"
            )
        return trainer.label_mapper(np.asarray(classes), level)

    return labels_of, sampler_labels_of


def check_trainer(
    hook, trainer, consumers: Sequence[TreeConsumer], requirements: Sequence[TreeRequirements]
) -> None:
    """The trainer must use the registered sampler with its batch size, and
    the registered losses and miners (warnings go out once per ``hook``)."""
    for consumer, wants in zip(consumers, requirements):
        if wants.batch_size is None:
            continue
        if trainer.sampler is not consumer:
            warn_once(
                hook,
                "sampler",
                f"a {type(consumer).__name__} is registered with this TreeRebuildHook but "
                "the trainer uses another sampler: pass the registered one as sampler=",
            )
        elif trainer.batch_size != wants.batch_size:
            raise ValueError(
                f"the trainer's batch_size is {trainer.batch_size} but the registered "
                f"{type(consumer).__name__} yields batches of {wants.batch_size} (l' m t): pass "
                "batch_size=sampler.batch_size to the trainer, or its batches split the "
                "anchor-neighbour groups"
            )
    funcs = list(trainer.loss_funcs.values()) + list((trainer.mining_funcs or {}).values())
    # a wrapped loss (CrossBatchMemory, DistributedLossWrapper) is a submodule
    used = [m for f in funcs for m in (f.modules() if isinstance(f, torch.nn.Module) else [f])]
    for consumer in consumers:
        if isinstance(consumer, torch.nn.Module) and not any(consumer is f for f in used):
            warn_once(
                hook,
                f"unused {id(consumer)}",
                f"a {type(consumer).__name__} is registered with this TreeRebuildHook but "
                "is not among the trainer's loss_funcs or mining_funcs: the trainer's own "
                "loss never receives the tree",
            )


def trainer_models(trainer) -> List[torch.nn.Module]:
    return [trainer.models["trunk"], trainer.models["embedder"]]


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
