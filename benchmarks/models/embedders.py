"""The embedder on top of the trunk: linear (the default), or a small MLP (the
default on a frozen trunk, where the embedder is all that trains)."""

from __future__ import annotations

from torch import nn

EMBEDDERS = ("linear", "mlp")
#: The MLP's hidden width.
MLP_WIDTH = 512


def make_embedder(kind: str, in_size: int, embedding_size: int) -> nn.Module:
    """linear: Linear(in_size, embedding_size); mlp: Linear(in_size, 512), ReLU,
    Linear(512, embedding_size)."""
    if kind == "linear":
        return nn.Linear(in_size, embedding_size)
    if kind == "mlp":
        return nn.Sequential(
            nn.Linear(in_size, MLP_WIDTH), nn.ReLU(), nn.Linear(MLP_WIDTH, embedding_size)
        )
    raise ValueError(f"--embedder must be one of {EMBEDDERS}, got {kind!r}")
