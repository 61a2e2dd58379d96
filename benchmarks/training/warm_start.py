"""--warm-start ITERS: the paper's initialisation. Every loss's run starts with ITERS
iterations of the plain triplet loss (the ``triplet`` row's hyper-parameters) on
MPerClassSampler batches, then goes on with its own loss and sampler from that
network, its optimizer state and its random generators, for the rest of the
budget. The warm phase is the same for every loss at a seed, so it is trained
once per seed and its end state handed to each loss's run; its evaluations
open every such run's curve.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import torch

from benchmarks.config import RunConfig
from benchmarks.console import Console
from benchmarks.data.splits import DataSplits
from benchmarks.evaluation.evaluate import Evaluation
from benchmarks.training.epochs import EpochEnd, train
from benchmarks.training.parts import build_models, build_optimizers, m_per_class_sampler
from benchmarks.training.seeding import RngState, restore_rng, rng_state, set_seed
from benchmarks.training.trainer import TrainerParts, build_trainer
from benchmarks.variants import HYPERPARAMETERS, M_PER_CLASS, build_loss

#: The loss of the warm phase.
WARM_LOSS = "triplet"


@dataclass
class WarmState:
    """Where a warm phase ended: the models' and optimizers' states, the random
    generators', the evaluations made on the way and the time it took."""

    iterations: int
    hyperparameters: Dict[str, Any]
    models: Dict[str, Dict[str, torch.Tensor]]
    optimizers: Dict[str, Dict[str, Any]]
    rng: RngState
    curve: List[Dict[str, Any]]
    validation_curve: List[Dict[str, Any]]
    train_seconds: float

    def continue_in(
        self,
        models: Dict[str, torch.nn.Module],
        optimizers: Dict[str, torch.optim.Optimizer],
        evaluation: Evaluation,
    ) -> None:
        """Make a run's parts go on from here: the models' weights, the optimizers'
        state (a loss's own optimizer starts fresh), the curves, the generators."""
        for name, model in models.items():
            model.load_state_dict(self.models[name])
        for name, optimizer in optimizers.items():
            if name in self.optimizers:
                optimizer.load_state_dict(copy.deepcopy(self.optimizers[name]))
        evaluation.curve = copy.deepcopy(self.curve)
        evaluation.validation_curve = copy.deepcopy(self.validation_curve)
        restore_rng(self.rng)

    def record(self) -> Dict[str, Any]:
        """What a run's JSON says of its warm start."""
        return {
            "iterations": self.iterations,
            "loss": WARM_LOSS,
            "hyperparameters": self.hyperparameters,
            "sampler": M_PER_CLASS,
            "train_seconds": self.train_seconds,
        }


def warm_hyperparameters(cfg: RunConfig) -> Dict[str, Any]:
    """The triplet row's hyper-parameters: this comparison's (tuned, or set by --hp)
    where it trains the triplet loss, else its defaults."""
    return dict(cfg.hyperparameters.get(WARM_LOSS, HYPERPARAMETERS[WARM_LOSS]))


def train_warm_phase(
    seed: int,
    iterations: int,
    cfg: RunConfig,
    splits: DataSplits,
    calculator,
    device: torch.device,
    console: Console,
) -> WarmState:
    """``iterations`` iterations of the triplet loss from the models every run of
    ``seed`` starts from, evaluated as a run is."""
    set_seed(seed)
    trunk, embedder = build_models(cfg, splits.channels, device, splits.feature_size)
    hyperparameters = warm_hyperparameters(cfg)
    loss = build_loss(WARM_LOSS, hyperparameters, collect_stats=False).loss
    models = {"trunk": trunk, "embedder": embedder}
    optimizers = build_optimizers(cfg, models, loss, None)
    evaluation = Evaluation(
        (trunk, embedder), splits, calculator, device, cfg, None, 0, console.bars
    )
    name = f"warm start seed {seed}"
    epoch_end = EpochEnd(cfg, evaluation, None, name, console, 1)
    sampler = m_per_class_sampler(cfg, splits.train_labels, cfg.samples_per_class)
    parts = TrainerParts(models, optimizers, loss, None, sampler, epoch_end)
    trainer = build_trainer(cfg, splits, device, parts)
    seconds = train(trainer, evaluation, epoch_end, cfg.evaluate_start, 0, iterations)
    console.say(f"{name}: the triplet loss for {iterations} iterations, the start of every loss")
    return WarmState(
        iterations=iterations,
        hyperparameters=hyperparameters,
        models={n: _copy_state(m) for n, m in models.items()},
        optimizers={n: copy.deepcopy(o.state_dict()) for n, o in optimizers.items()},
        rng=rng_state(),
        curve=copy.deepcopy(evaluation.curve),
        validation_curve=copy.deepcopy(evaluation.validation_curve),
        train_seconds=seconds,
    )


def _copy_state(model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class WarmStarts:
    """The warm phases of a comparison: trained once per (seed, length), then handed
    to every loss's run."""

    def __init__(self) -> None:
        self._states: Dict[Tuple[int, int, int], WarmState] = {}
        #: how many warm phases were trained (not reused)
        self.trained = 0

    def get(
        self,
        seed: int,
        iterations: int,
        cfg: RunConfig,
        splits: DataSplits,
        calculator,
        device: torch.device,
        console: Optional[Console] = None,
    ) -> WarmState:
        key = (seed, iterations, id(splits))
        if key not in self._states:
            console = console or Console(quiet=True)
            self._states[key] = train_warm_phase(
                seed, iterations, cfg, splits, calculator, device, console
            )
            self.trained += 1
        return self._states[key]
