"""What happens around PML's training loop: the first evaluation and tree before
it, and at each epoch's end a new tree, an evaluation, a line, a barrier."""

from __future__ import annotations

import time
from typing import Any, Dict, Optional, Protocol

import torch

from benchmarks.config import RunConfig
from benchmarks.console import Console
from benchmarks.diagnostics import MarginDiagnostics
from benchmarks.diagnostics import describe as describe_diagnostics
from benchmarks.evaluation.hierarchy import HierarchyTracker
from benchmarks.pml_compat import trainer_label_mapper


class Evaluator(Protocol):
    """Evaluates the model after ``epoch`` epochs (None where this rank does not),
    keeping the seconds it spent."""

    seconds: float

    def __call__(self, epoch: int) -> Optional[Dict[str, Any]]: ...


class EpochEnd:
    """PML's end_of_epoch_hook: rebuild the tree (not after the last epoch), evaluate
    every eval_every epochs and after the last, report the epoch; under torchrun
    the other ranks wait."""

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
        self.bar = console.bar(total=self.epochs, desc=f"{name}: epochs")
        self.epoch_started = time.perf_counter()

    def __call__(self, trainer) -> bool:
        if self.tree_hook is not None and trainer.epoch < self.epochs and self.rebuilds:
            self.rebuild_tree(trainer, trainer.epoch)
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

    def rebuild_tree(self, trainer, epoch: int) -> None:
        start = time.perf_counter()
        self.tree_hook(trainer)
        self.tree_seconds += time.perf_counter() - start
        self.last_tree, self.last_label_fn = self.tree_hook.tree, trainer_label_mapper(trainer)
        if self.diagnostics is not None:
            self.finish_diagnostics_period()
            self.diagnostics.start(self.tree_hook.tree, epoch * self.iters_per_epoch)
        if self.hierarchy is not None:
            self.hierarchy.record(
                self.tree_hook.tree, epoch * self.iters_per_epoch, self.last_label_fn
            )  # labels mapped as the hook maps them

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
    trainer, epochs: int, evaluation: Evaluator, epoch_end: EpochEnd, evaluate_start: bool = True
) -> float:
    """Evaluate the starting model (unless not ``evaluate_start``), build the first
    tree, train. Returns the training seconds: tree rebuilds count (they are part of
    HTL's cost), evaluations do not."""
    if evaluate_start:
        evaluation(0)
    eval_seconds_before = evaluation.seconds
    start = epoch_end.epoch_started = time.perf_counter()
    if epoch_end.tree_hook is not None:
        epoch_end.rebuild_tree(trainer, 0)  # the initial tree, from the starting model
    trainer.train(num_epochs=epochs)
    total = time.perf_counter() - start
    epoch_end.bar.close()
    return total - (evaluation.seconds - eval_seconds_before) - epoch_end.measure_seconds
