"""Reading a trunk's --pretrained-weights file and checking it fits the trunk.

Accepted: a state dict (a dict of tensors) as saved by torch.save(model.state_dict()),
plain or under a "state_dict" or "model" key, with or without the "module." prefix
of DataParallel and DistributedDataParallel. Every other file is refused with one
line (WeightsError) that names the file and the fix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Sequence, Tuple

import torch

#: Keys a checkpoint may wrap its state dict in (training scripts' usual choices).
WRAPPER_KEYS = ("state_dict", "model")
#: What a state dict from DataParallel or DistributedDataParallel has before each key.
PARALLEL_PREFIX = "module."
#: Buffers older checkpoints lack and BatchNorm fills in itself.
OPTIONAL_SUFFIXES = ("num_batches_tracked",)
SAVE_HINT = "torch.save(model.state_dict(), PATH)"


class WeightsError(ValueError):
    """A --pretrained-weights file that cannot be read or does not fit the trunk."""


def read_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, unwrapped and without the ``module.`` prefix."""
    flag = f"--pretrained-weights {path}"
    if not os.path.isfile(path):
        what = "is a folder" if os.path.isdir(path) else "no such file"
        raise WeightsError(f"{flag}: {what}; give a local state dict file (nothing is downloaded)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many types, none of them specific
        raise WeightsError(_why_unreadable(path, e)) from None
    state = _unwrap(obj, flag)
    while state and all(k.startswith(PARALLEL_PREFIX) for k in state):
        state = {k[len(PARALLEL_PREFIX) :]: v for k, v in state.items()}
    return state


def _why_unreadable(path: str, error: Exception) -> str:
    flag = f"--pretrained-weights {path}"
    try:
        pickled = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:
        pickled = []
    if pickled:
        # names only: nothing of the file is imported or run
        own = [g for g in pickled if not g.startswith("torch.")] or pickled
        named = ", ".join(sorted(own)[:2]) + (", ..." if len(own) > 2 else "")
        if any(g.startswith("torch.nn.modules.") for g in pickled):
            what = f"a pickled model ({named}), not a state dict"
        else:
            what = f"pickled Python objects ({named}) besides tensors"
        return f"{flag} holds {what}; save model.state_dict() instead: {SAVE_HINT}"
    first_line = (str(error).strip().splitlines() or [""])[0][:120]
    return (
        f"{flag} is not a PyTorch checkpoint (torch.load: {type(error).__name__}: {first_line}); "
        f"save the weights with {SAVE_HINT}"
    )


def _unwrap(obj, flag: str) -> Dict[str, torch.Tensor]:
    expected = f"a state dict, plain or under {' or '.join(map(repr, WRAPPER_KEYS))}"
    while isinstance(obj, Mapping) and not _all_tensors(obj):
        inner = [obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)]
        if not inner:
            keys = ", ".join(map(str, list(obj)[:5]))
            raise WeightsError(
                f"{flag} holds a dict whose entries are not all tensors (keys: {keys}) and no "
                f"{' or '.join(map(repr, WRAPPER_KEYS))} in it; give {expected}: {SAVE_HINT}"
            )
        obj = inner[0]
    if not isinstance(obj, Mapping) or not obj:
        what = "an empty dict" if isinstance(obj, Mapping) else f"a {type(obj).__name__}"
        raise WeightsError(f"{flag} holds {what}, not {expected}; save it with {SAVE_HINT}")
    return {str(k): v for k, v in obj.items()}


def _all_tensors(obj: Mapping) -> bool:
    return bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def drop_prefixes(
    state: Mapping[str, torch.Tensor], prefixes: Sequence[str]
) -> Dict[str, torch.Tensor]:
    """``state`` without the keys under ``prefixes`` (a classifier head the trunk lacks)."""
    return {k: v for k, v in state.items() if not k.startswith(tuple(prefixes))}


@dataclass
class Misfit:
    """How a state dict differs from the trunk's: keys it lacks, keys the trunk lacks,
    and keys of both whose shapes differ (key, shape in the file, shape in the trunk)."""

    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    other_shape: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.other_shape)


def compare_to(state: Mapping[str, torch.Tensor], shapes: Mapping[str, torch.Size]) -> Misfit:
    """``state`` against the trunk's parameter and buffer shapes."""
    missing = [k for k in shapes if k not in state and not k.endswith(OPTIONAL_SUFFIXES)]
    unexpected = [k for k in state if k not in shapes]
    other = [
        (k, tuple(v.shape), tuple(shapes[k]))
        for k, v in state.items()
        if k in shapes and tuple(v.shape) != tuple(shapes[k])
    ]
    return Misfit(missing, unexpected, other)


def describe_misfit(misfit: Misfit, path: str, backbone: str, likely: str = "") -> str:
    """One line: what does not fit, the first few keys of each kind, and the fix.
    ``likely``: the backbone whose weights these are, when one fits them exactly."""
    parts = []
    if misfit.missing:
        parts.append(f"{_count(misfit.missing)} missing ({_first(misfit.missing)})")
    if misfit.unexpected:
        parts.append(f"{_count(misfit.unexpected)} unexpected ({_first(misfit.unexpected)})")
    if misfit.other_shape:
        shown = [f"{k} {_dims(got)} vs {_dims(want)}" for k, got, want in misfit.other_shape]
        parts.append(
            f"{_count(misfit.other_shape)} of another shape, file vs {backbone} ({_first(shown)})"
        )
    if likely:
        fix = f"these are {likely} weights: use --backbone {likely}, or a {backbone} state dict"
    elif misfit.other_shape and not (misfit.missing or misfit.unexpected):
        fix = f"give the weights of a {backbone} with the same layer sizes"
    elif misfit.unexpected and not (misfit.missing or misfit.other_shape):
        fix = "remove those keys, or choose the --backbone they were saved from"
    elif misfit.missing and not (misfit.unexpected or misfit.other_shape):
        fix = f"give a complete state dict: {SAVE_HINT}"
    else:
        fix = f"give a state dict of torchvision's {backbone}"
    return (
        f"--pretrained-weights {path} does not fit --backbone {backbone}: {'; '.join(parts)}; {fix}"
    )


def _count(items: Sequence) -> str:
    return f"{len(items)} tensor{'s' if len(items) != 1 else ''}"


def _dims(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape)) or "scalar"


def _first(keys: Sequence[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (", ..." if len(keys) > n else "")
