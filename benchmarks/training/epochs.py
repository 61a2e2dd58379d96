"""What happens around PML's training loop: the first evaluation and tree before
it, and at each epoch's end a new tree, an evaluation, a line, a barrier.

Epochs are counted over the whole run: a run that starts from a warm start's end
(not necessarily an epoch's end) trains the rest of that epoch first, so every
evaluation and every tree falls where it falls without a warm start.
"""

from __future__ import annotations

import time
from typing import Any, Dict, Optional, Protocol

import torch

from benchmarks.config import RunConfig
from benchmarks.console import Console
from benchmarks.diagnostics import MarginDiagnostics
from benchmarks.diagnostics import describe as describe_diagnostics
from benchmarks.evaluation.hierarchy import HierarchyTracker
from benchmarks.pml_compat import quiet_training, trainer_label_mapper


class Evaluator(Protocol):
    """Evaluates the model after ``epoch`` epochs (None where this rank does not),
    keeping the seconds it spent."""

    seconds: float

    def __call__(self, epoch: int) -> Optional[Dict[str, Any]]: ...


class EpochEnd:
    """PML's end_of_epoch_hook: rebuild the tree (not after the last epoch), evaluate
    every eval_every epochs and after the last, report the epoch; under torchrun
    the other ranks wait. Nothing happens at the end of a part of an epoch that
    stops short of its end (``mid_epoch``: a warm start's last iterations)."""

    def __init__(
        self,
        cfg: RunConfig,
        evaluation: Optional[Evaluator],
        tree_hook,
        name: str,
        console: Console,
        world_size: int,
        rebuilds: bool = True,
    ):
        self.epochs, self.eval_every = cfg.epochs, cfg.eval_every
        self.evaluation, self.tree_hook = evaluation, tree_hook
        self.world_size = world_size
        self.name, self.console = name, console
        self.tree_seconds = 0.0
        self.iters_per_epoch = cfg.iters_per_epoch
        #: measures each new tree against the data set's superclasses, when it has some
        self.hierarchy: Optional[HierarchyTracker] = None
        #: HTL's margins, active triplets and far-negative share per tree
        self.diagnostics: Optional[MarginDiagnostics] = None
        #: False: the first tree is kept (the "rebuild": "first" diagnosis)
        self.rebuilds = rebuilds
        #: the last tree built, and the map from the data set's labels to its labels
        self.last_tree = None
        self.last_label_fn = None
        #: the training stops inside an epoch: its end is no epoch's end
        self.mid_epoch = False
        self.bar = console.bar(total=self.epochs, desc=f"{name}: epochs")
        self.epoch_started = time.perf_counter()

    def __call__(self, trainer) -> bool:
        if self.mid_epoch:
            return True
        if self.tree_hook is not None and trainer.epoch < self.epochs and self.rebuilds:
            self.rebuild_tree(trainer, trainer.epoch * self.iters_per_epoch)
        seconds = time.perf_counter() - self.epoch_started
        metrics = None
        if trainer.epoch % self.eval_every == 0 or trainer.epoch == self.epochs:
            metrics = self.evaluation(trainer.epoch)
        self.bar.update(1)
        self.console.epoch_done(self.name, trainer.epoch, self.epochs, seconds, metrics)
        if self.world_size > 1:
            torch.distributed.barrier()  # the others wait while rank 0 evaluates
        self.epoch_started = time.perf_counter()
        return True

    def rebuild_tree(self, trainer, iteration: int) -> None:
        """A new tree from the trainer's models, after ``iteration`` iterations."""
        start = time.perf_counter()
        self.tree_hook(trainer)
        self.tree_seconds += time.perf_counter() - start
        self.last_tree, self.last_label_fn = self.tree_hook.tree, trainer_label_mapper(trainer)
        if self.diagnostics is not None:
            self.finish_diagnostics_period()
            self.diagnostics.start(self.tree_hook.tree, iteration)
        if self.hierarchy is not None:
            # labels mapped as the hook maps them
            self.hierarchy.record(self.tree_hook.tree, iteration, self.last_label_fn)

    def finish_diagnostics_period(self) -> None:
        """Close the running tree's diagnostics and log them (one line)."""
        finished = self.diagnostics.finish()
        if finished is not None:
            self.console.say(f"{self.name}: {describe_diagnostics(finished)}")

    @property
    def measure_seconds(self) -> float:
        """Time spent measuring trees against superclasses (not training)."""
        return self.hierarchy.seconds if self.hierarchy is not None else 0.0


def train(
    trainer,
    evaluation: Evaluator,
    epoch_end: EpochEnd,
    evaluate_start: bool = True,
    start: int = 0,
    end: Optional[int] = None,
) -> float:
    """Train from iteration ``start`` (0, or a warm start's end) to ``end`` (default:
    the budget, epochs x iters_per_epoch). A run from 0 evaluates its starting model
    first (where ``evaluate_start``); the first tree is built from the model at
    ``start``. Returns the training seconds: tree rebuilds count (they are part of HTL's
    cost), evaluations do not."""
    ipe = epoch_end.iters_per_epoch
    end = epoch_end.epochs * ipe if end is None else end
    if evaluate_start and start == 0:
        evaluation(0)
    eval_seconds_before = evaluation.seconds
    began = epoch_end.epoch_started = time.perf_counter()
    if start >= ipe:
        epoch_end.bar.update(start // ipe)  # the warm start's whole epochs
    if epoch_end.tree_hook is not None:
        epoch_end.rebuild_tree(trainer, start)  # the first tree, from the starting model
    train_span(trainer, epoch_end, start, end)
    total = time.perf_counter() - began
    epoch_end.bar.close()
    return total - (evaluation.seconds - eval_seconds_before) - epoch_end.measure_seconds


def train_span(trainer, epoch_end: EpochEnd, start: int, end: int) -> None:
    """PML's trainer from iteration ``start`` to ``end``, in the run's epochs: the rest
    of a started epoch, the whole epochs (one trainer.train call, as a run without
    a warm start makes), then a last part of an epoch, if any."""
    ipe = epoch_end.iters_per_epoch
    epoch = start // ipe + 1
    if start % ipe:
        stop = min(end, epoch * ipe)
        _train_part(trainer, epoch_end, epoch, stop - start, mid_epoch=stop % ipe != 0)
        start, epoch = stop, epoch + 1
    whole = (end - start) // ipe
    if whole:
        trainer.iterations_per_epoch = ipe
        with quiet_training():
            trainer.train(start_epoch=epoch, num_epochs=epoch + whole - 1)
        start, epoch = start + whole * ipe, epoch + whole
    if start < end:
        _train_part(trainer, epoch_end, epoch, end - start, mid_epoch=True)


def _train_part(trainer, epoch_end: EpochEnd, epoch: int, iterations: int, mid_epoch: bool):
    """``iterations`` iterations of epoch ``epoch``; at their end, the epoch's end
    unless ``mid_epoch``."""
    trainer.iterations_per_epoch = iterations
    epoch_end.mid_epoch = mid_epoch
    try:
        with quiet_training():
            trainer.train(start_epoch=epoch, num_epochs=epoch)
    finally:
        epoch_end.mid_epoch = False
        trainer.iterations_per_epoch = epoch_end.iters_per_epoch
