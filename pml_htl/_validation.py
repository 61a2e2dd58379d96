"""Argument checks shared by the tree, loss, miner, sampler and hook.

This module depends only on ``_sync`` in the package, so every layer can use it.
"""

from __future__ import annotations

import math
import numbers
from typing import Callable, Optional

import torch

from . import _sync


def require(
    condition: torch.Tensor, message: str, details: Optional[Callable[[], str]] = None
) -> None:
    """Raise ValueError(message) unless the 0-d bool tensor ``condition`` holds.

    Where `_sync.device_side_checks` says so (CUDA), an asynchronous
    device-side assert instead: no host-device sync, but a failure stops the
    process's CUDA context (run with PML_HTL_EAGER_CHECKS=1 to get the
    ValueError). ``details`` gives a fuller message for the eager error only.
    """
    if _sync.device_side_checks(condition.device):
        torch._assert_async(condition, message)
    elif not bool(condition):
        raise ValueError(message if details is None else details())


def check_labels(labels, name: str = "labels") -> None:
    if not torch.is_tensor(labels):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(labels).__name__}")
    if labels.ndim != 1:
        raise ValueError(f"{name} must be 1-D of shape (N,), got shape {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise TypeError(
            f"{name} must hold integer class labels, got dtype {labels.dtype}: pass {name}.long()"
        )


def check_embeddings(embeddings, name: str = "embeddings", asynchronous: bool = False) -> None:
    """A 2-D floating-point tensor of finite values; ``asynchronous``: the
    finiteness check goes through `require` (the loss's and the miner's
    per-call path), else it reads the answer back at once."""
    if not torch.is_tensor(embeddings):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(embeddings).__name__}")
    if embeddings.ndim != 2:
        raise ValueError(f"{name} must be 2-D of shape (N, D), got shape {tuple(embeddings.shape)}")
    if not embeddings.dtype.is_floating_point:
        raise TypeError(f"{name} must be floating point, got dtype {embeddings.dtype}")
    finite = torch.isfinite(embeddings.detach()).all()
    if asynchronous:
        require(finite, f"{name} contain NaN or Inf")
    elif not bool(finite):
        raise ValueError(f"{name} contain NaN or Inf")


def check_embeddings_and_labels(
    embeddings,
    labels,
    emb_name: str = "embeddings",
    label_name: str = "labels",
    allow_empty: bool = False,
    asynchronous: bool = False,
) -> None:
    check_embeddings(embeddings, emb_name, asynchronous)
    check_labels(labels, label_name)
    if embeddings.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{emb_name} and {label_name} must have the same length, got "
            f"{embeddings.shape[0]} and {labels.shape[0]}"
        )
    if embeddings.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{emb_name} is empty: at least one sample is needed")


def check_finite_number(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


def check_beta(value, upper: float) -> float:
    """beta, the constant part of HTL's margin: a squared distance between unit
    vectors, so it lies in [0, upper] (upper = 4, the largest one)."""
    beta = check_finite_number(value, "beta")
    if not 0 <= beta <= upper:
        raise ValueError(
            f"beta must lie in [0, {upper:g}] (a squared distance between unit vectors; "
            f"the paper uses 0.1), got {beta:g}"
        )
    return beta


def check_margin_scale(value) -> float:
    """lambda, the scale of the tree's part of the margin: a finite number >= 0
    (1 is the paper's margin, 0 the flat margin beta)."""
    scale = check_finite_number(value, "margin_scale")
    if scale < 0:
        raise ValueError(
            f"margin_scale (lambda) must be >= 0 (1 is the paper's margin), got {scale:g}"
        )
    return scale


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_metric_inputs(embeddings, labels, ref_emb, ref_labels) -> None:
    """What the loss and the miner take: embeddings with labels, and optionally
    reference embeddings with their labels, of the same embedding size. Empty
    batches are allowed, as in PML (a zero loss, no triplets). Finiteness is
    checked without a host-device sync on CUDA (`require`)."""
    if labels is None:
        raise ValueError("labels are required: HTL's margins depend on the classes")
    check_embeddings_and_labels(embeddings, labels, allow_empty=True, asynchronous=True)
    if (ref_emb is None) != (ref_labels is None):
        raise ValueError("ref_emb and ref_labels must be given together")
    if ref_emb is not None:
        check_embeddings_and_labels(
            ref_emb, ref_labels, "ref_emb", "ref_labels", allow_empty=True, asynchronous=True
        )
        if ref_emb.shape[1] != embeddings.shape[1]:
            raise ValueError(
                f"ref_emb must have embedding size {embeddings.shape[1]}, got {ref_emb.shape[1]}"
            )
