"""Checks of the statistics' inputs: each bad input is one ValueError naming it."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def check_confidence(confidence: float) -> float:
    confidence = float(confidence)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    return confidence


def finite_vector(values: Sequence[float], name: str) -> np.ndarray:
    """``values`` as a non-empty 1-D float array of finite numbers, else ValueError naming it."""
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a sequence of numbers: {error}") from None
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} must not be empty")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must hold finite numbers only (no NaN or inf)")
    return array


def hit_array(hits: Any, name: str, ndim: int) -> np.ndarray:
    """``hits`` as an int64 array of 0/1 with ``ndim`` dimensions, none empty, else ValueError."""
    try:
        array = np.asarray(hits)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a rectangular array of 0/1 hits: {error}") from None
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold 0/1 (or bool) hits, got dtype {array.dtype}")
    if array.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {array.shape}")
    if 0 in array.shape:
        raise ValueError(f"{name} must not be empty, got shape {array.shape}")
    if not np.all((array == 0) | (array == 1)):
        raise ValueError(f"{name} must hold only 0/1 (or bool) hits")
    return array.astype(np.int64)
