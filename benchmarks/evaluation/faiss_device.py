"""faiss's k-NN and k-means on the device of the embeddings.

PML's ``FaissKNN`` and ``FaissKMeans`` run on the CPU unless told otherwise,
or spread over every GPU faiss sees. Here the choice follows the device the
embeddings live on: the GPU when that device is CUDA and faiss was built
with GPU support (a faiss-gpu wheel), the CPU otherwise, exactly as before.
"""

from __future__ import annotations

from typing import Union

import torch
from pytorch_metric_learning.utils.inference import FaissKMeans, FaissKNN

__all__ = [
    "describe_knn",
    "faiss_available",
    "faiss_gpu_count",
    "faiss_kmeans",
    "faiss_knn",
    "faiss_uses_gpu",
]

Device = Union[str, torch.device]


def faiss_available() -> bool:
    """True when faiss can be imported (PML's default k-NN and k-means)."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def faiss_gpu_count() -> int:
    """GPUs faiss can use: 0 without faiss, with a CPU-only build, or without a GPU."""
    try:
        import faiss
    except ImportError:
        return 0
    # CPU-only builds (faiss-cpu) have neither GPU resources nor GPU indexes;
    # some still define get_num_gpus (returning 0).
    if not hasattr(faiss, "StandardGpuResources") or not hasattr(faiss, "get_num_gpus"):
        return 0
    return int(faiss.get_num_gpus())


def _as_device(device: Device) -> torch.device:
    if isinstance(device, str):
        return torch.device(device)
    if not isinstance(device, torch.device):
        raise TypeError(f"device must be a str or torch.device, got {type(device).__name__}")
    return device


def faiss_uses_gpu(device: Device) -> bool:
    """True when faiss should search and cluster on the GPU for embeddings on ``device``."""
    return _as_device(device).type == "cuda" and faiss_gpu_count() > 0


def _gpu_index(device: torch.device) -> int:
    return torch.cuda.current_device() if device.index is None else device.index


def faiss_knn(device: Device) -> FaissKNN:
    """PML's exact L2 ``FaissKNN``; on ``device``'s GPU when :func:`faiss_uses_gpu`.

    On the GPU the index lives on that one GPU (PML's default spreads it over
    every GPU faiss sees). PML itself falls back to the CPU for k above
    faiss's GPU limit (2048), with a warning.
    """
    device = _as_device(device)
    if faiss_uses_gpu(device):
        return FaissKNN(gpus=[_gpu_index(device)])
    return FaissKNN()


def faiss_kmeans(device: Device, **kwargs) -> FaissKMeans:
    """PML's ``FaissKMeans`` (keyword arguments go to ``faiss.Kmeans``), with
    ``gpu`` set by :func:`faiss_uses_gpu` unless given. faiss's k-means on the
    GPU uses every GPU it sees (``CUDA_VISIBLE_DEVICES`` restricts them)."""
    kwargs.setdefault("gpu", faiss_uses_gpu(device))
    return FaissKMeans(**kwargs)


def describe_knn(device: Device) -> str:
    """Where :func:`~benchmarks.evaluation.accuracy.make_accuracy_calculator`'s
    k-NN runs for embeddings on ``device``, in words (for logs and reports)."""
    if not faiss_available():
        return "torch (faiss not installed)"
    return "faiss on GPU" if faiss_uses_gpu(device) else "faiss on CPU"
