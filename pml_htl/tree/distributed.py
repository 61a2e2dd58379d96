"""torch.distributed helpers: one class index, reduced statistics, identical trees."""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from .class_statistics import ClassStatistics
from .hierarchical_class_tree import HierarchicalClassTree


def world() -> Tuple[int, int]:
    """(rank, world size); (0, 1) outside a process group."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def is_distributed() -> bool:
    return world()[1] > 1


def _collective_device(tensor: torch.Tensor) -> torch.device:
    # NCCL needs CUDA tensors; gloo takes CPU ones
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_gather_labels(labels: torch.Tensor) -> torch.Tensor:
    """Sorted union of every rank's labels."""
    device = _collective_device(labels)
    local = torch.unique(labels.long()).to(device)
    _, size = world()
    counts = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(size)]
    torch.distributed.all_gather(counts, torch.tensor([local.numel()], device=device))
    longest = int(max(c.item() for c in counts))
    padded = torch.full((longest,), -1, dtype=torch.long, device=device)
    padded[: local.numel()] = local
    parts = [torch.empty_like(padded) for _ in range(size)]
    torch.distributed.all_gather(parts, padded)
    merged = torch.cat([p[: int(c.item())] for p, c in zip(parts, counts)])
    return torch.unique(merged).to(labels.device)


def _packed_over(statistics: ClassStatistics, class_labels: torch.Tensor) -> torch.Tensor:
    """(C, D + 2) float64 [n_c, Q_c, S_c] over ``class_labels`` (zeros for classes
    this rank has not seen)."""
    index = torch.searchsorted(class_labels, statistics.labels)
    if bool((index >= len(class_labels)).any()) or not torch.equal(
        class_labels[index.clamp(max=len(class_labels) - 1)], statistics.labels
    ):
        raise ValueError("class_labels must contain every label of the statistics")
    packed = torch.zeros(
        len(class_labels), statistics.embedding_size + 2, dtype=torch.float64,
        device=statistics.device,
    )  # fmt: skip
    packed[index] = statistics.as_tensor()
    return packed


def _unpacked(class_labels: torch.Tensor, packed: torch.Tensor) -> ClassStatistics:
    seen = packed[:, 0] > 0
    return ClassStatistics.from_tensor(class_labels[seen], packed[seen])


def all_reduce_statistics(
    statistics: ClassStatistics, class_labels: Optional[torch.Tensor] = None
) -> ClassStatistics:
    """The sum of every rank's statistics, with one collective of C x (D + 2) numbers.

    Args:
        statistics: this rank's statistics.
        class_labels: the class index shared by all ranks (e.g. the training
            set's labels); by default the union of the labels every rank holds.
    """
    if not is_distributed():
        return statistics
    if class_labels is None:
        class_labels = all_gather_labels(statistics.labels)
    class_labels = torch.unique(class_labels.long().to(statistics.device))
    packed = _packed_over(statistics, class_labels)
    summed = packed.to(_collective_device(packed))
    torch.distributed.all_reduce(summed)
    return _unpacked(class_labels, summed.to(statistics.device))


def combine_rank_statistics(statistics: ClassStatistics) -> ClassStatistics:
    """The one set of statistics every rank builds its drop-in tree from.

    Ranks that saw the same samples (each computed the loss of the gathered
    global batch, as ``DistributedLossWrapper(efficient=False)`` does) hold the
    same integer counts n_c; their float sums differ only in rounding, since
    each rank gathers its own rows first. Ranks that saw their own batches
    hold different counts. So: the all-reduced sum, divided by the world size
    when every rank's counts agree. Every rank gets the same reduced tensor,
    hence the same tree, whatever the summation order.
    """
    if not is_distributed():
        return statistics
    _, size = world()
    class_labels = all_gather_labels(statistics.labels).to(statistics.device)
    packed = _packed_over(statistics, class_labels).to(_collective_device(statistics.sums))
    counts = packed[:, 0]
    extremes = torch.stack([counts, -counts])  # max and -min of every class's count
    torch.distributed.all_reduce(extremes, op=torch.distributed.ReduceOp.MAX)
    counts_agree = torch.equal(extremes[0], -extremes[1])
    torch.distributed.all_reduce(packed)
    if counts_agree:
        packed /= size
    return _unpacked(class_labels, packed.to(statistics.device))


def _fingerprint_tree(tree: HierarchicalClassTree) -> torch.Tensor:
    levels = tree.level_assignments.double().cpu()
    weights = torch.arange(1, levels.numel() + 1, dtype=torch.float64).view(levels.shape)
    return torch.stack(
        [
            (tree.labels.double().cpu() * torch.arange(1, tree.num_classes + 1)).sum(),
            (levels * weights).sum(),
            tree.thresholds.double().cpu().sum(),
            tree.spreads.double().cpu().sum(),
        ]
    )


def _all_equal(fingerprint: torch.Tensor, rtol: float = 0.0) -> bool:
    device = _collective_device(fingerprint)
    fingerprint = fingerprint.to(device)
    _, size = world()
    parts = [torch.empty_like(fingerprint) for _ in range(size)]
    torch.distributed.all_gather(parts, fingerprint)
    return all(torch.allclose(parts[0], p, rtol=rtol, atol=0) for p in parts[1:])


def check_same_tree(tree: HierarchicalClassTree) -> None:
    """Raise if the ranks hold different trees (each would train against other margins)."""
    if is_distributed() and not _all_equal(_fingerprint_tree(tree)):
        rank, _ = world()
        raise RuntimeError(
            f"the class tree differs across ranks (seen on rank {rank}): every rank must "
            "build it from the same all-reduced statistics"
        )


def agreed_max(value: float) -> float:
    """The largest ``value`` over the ranks (``value`` itself outside a process group)."""
    if not is_distributed():
        return value
    tensor = torch.tensor([value], dtype=torch.float64)
    tensor = tensor.to(_collective_device(tensor))
    torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
    return float(tensor.item())
