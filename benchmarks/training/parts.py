"""The parts of one run: models, sampler, optimizers, the tree hook, and their
torchrun wrappers. Everything but the loss and its sampler is the same for
every loss."""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from benchmarks.config import RunConfig, run_options
from benchmarks.data.splits import DataSplits
from benchmarks.models import make_embedder, make_trunk
from benchmarks.variants import ANCHOR_NEIGHBOR, USES_TREE


def build_models(
    cfg: RunConfig, channels: int, device: torch.device, feature_size: Optional[int] = None
) -> Tuple[torch.nn.Module, torch.nn.Module]:
    """The trunk and the embedder on top of it (--embedder), on ``device``. On a
    frozen trunk's features (``feature_size``) the trunk is the identity: the
    embedder is all that trains, and the tree hook embeds through it alone."""
    if feature_size is not None:
        trunk, trunk_size = torch.nn.Identity(), feature_size
    else:
        trunk, trunk_size = make_trunk(
            cfg.backbone, channels, cfg.pretrained_weights, cfg.googlenet_transform_input
        )
    embedder = make_embedder(cfg.embedder, trunk_size, cfg.embedding_size)
    return trunk.to(device), embedder.to(device)


def build_sampler(
    loss_name: str, seed: int, cfg: RunConfig, train_labels: np.ndarray, world_size: int
) -> torch.utils.data.Sampler:
    """Anchor-neighbour batches where HTL's method prescribes them or --sampler asks
    for them (and for every loss under torchrun); PML's MPerClassSampler, t samples
    per class, otherwise."""
    from pml_htl import samplers

    options = run_options(loss_name, cfg)
    B, m, t = cfg.batch_size, options["classes_per_anchor"], options["samples_per_class"]
    length = cfg.iters_per_epoch * B
    if options["sampler"] == ANCHOR_NEIGHBOR or world_size > 1:
        # under torchrun every sampler must hand each rank its slice of one global
        # batch: the baselines then get the A-N sampler without a tree, which draws
        # random classes, t samples each, as MPerClassSampler does
        return samplers.AnchorNeighborSampler(
            train_labels, B // (m * t), m, t, length_before_new_iter=length, seed=seed
        )
    return m_per_class_sampler(cfg, train_labels, t)


def m_per_class_sampler(
    cfg: RunConfig, train_labels: np.ndarray, samples_per_class: int
) -> torch.utils.data.Sampler:
    """PML's MPerClassSampler: batches of B, t samples per class, an epoch's worth of
    indices at a time."""
    from pytorch_metric_learning import samplers as pml_samplers

    length = cfg.iters_per_epoch * cfg.batch_size
    return pml_samplers.MPerClassSampler(
        train_labels, samples_per_class, batch_size=cfg.batch_size, length_before_new_iter=length
    )


def distribute(
    models: Dict[str, torch.nn.Module], loss, miner, device: torch.device
) -> Tuple[Dict[str, torch.nn.Module], Any, Any]:
    """torchrun: the models in DistributedDataParallel, the loss and miner gathering
    every rank's embeddings."""
    from pytorch_metric_learning.utils import distributed as pml_dist

    ddp_kw = {"device_ids": [device]} if device.type == "cuda" else {}
    DDP = torch.nn.parallel.DistributedDataParallel
    models = {name: DDP(model, **ddp_kw) for name, model in models.items()}
    loss = pml_dist.DistributedLossWrapper(loss)
    if miner is not None:
        miner = pml_dist.DistributedMinerWrapper(miner)
    return models, loss, miner


def make_optimizer(cfg: RunConfig, params, lr: float) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=cfg.weight_decay)


def build_optimizers(
    cfg: RunConfig,
    models: Dict[str, torch.nn.Module],
    loss,
    loss_optimizer: Optional[Tuple[str, float]],
) -> Dict[str, torch.optim.Optimizer]:
    """One optimizer per model with parameters (a frozen trunk's identity has none),
    named as PML's trainer expects; plain SGD for a loss with parameters of its own
    (the margin loss's beta)."""
    optimizers = {
        f"{name}_optimizer": make_optimizer(cfg, model.parameters(), cfg.lr)
        for name, model in models.items()
        if any(True for _ in model.parameters())
    }
    if loss_optimizer is not None:
        name, lr = loss_optimizer
        optimizers[name] = torch.optim.SGD(loss.parameters(), lr=lr)
    return optimizers


def build_tree_hook(
    loss_name: str, consumers: Sequence[Any], splits: DataSplits, cfg: RunConfig, progress: bool
) -> Optional[Any]:
    """The hook that rebuilds the class tree for the losses that use one and for the
    anchor-neighbour sampler, else None. Its statistics come from the tree view: the
    clean evaluation views of the training set, its augmented training views, or
    the training steps."""
    from pml_htl import tree_hooks
    from pml_htl.tree import TreeConsumer

    options = run_options(loss_name, cfg)
    if loss_name not in USES_TREE and options["sampler"] != ANCHOR_NEIGHBOR:
        return None
    consumers = [c for c in consumers if isinstance(c, TreeConsumer)]
    if not consumers:
        return None  # a row with a tree for its sampler, on MPerClassSampler batches
    view = options["tree_view"]
    return tree_hooks.TreeRebuildHook(
        splits.train if view == "augmented" else splits.train_eval,
        consumers=consumers,
        num_workers=cfg.num_workers,
        progress=progress,
        statistics_from="training" if view == "training" else "inference",
    )
