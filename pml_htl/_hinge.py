"""How the tree's margin alpha enters a hinge on a PML distance object (shared by
the loss and the miner; docs/method.md, "Hinge units")."""

from __future__ import annotations

from typing import Optional

import torch
from pytorch_metric_learning.distances import (
    BaseDistance,
    DotProductSimilarity,
    LpDistance,
)

from ._triplets import upcast_half
from .tree import HierarchicalClassTree


def check_distance(distance: BaseDistance) -> None:
    """HTL's alpha is a squared Euclidean distance: only distances with a known
    relation to it are accepted."""
    if not distance.normalize_embeddings:
        raise TypeError(
            "distance must normalise embeddings (normalize_embeddings=True): the tree's "
            "thresholds d_l run up to 4, the largest squared distance of unit vectors"
        )
    if isinstance(distance, LpDistance):
        if distance.p != 2 or distance.power not in (1, 2):
            raise TypeError(
                "distance must be LpDistance(p=2, power=2) (the default: squared "
                "distances, alpha's units), LpDistance(p=2, power=1) (plain "
                f"distances, as printed in the paper), got p={distance.p}, power={distance.power}"
            )
    elif isinstance(distance, DotProductSimilarity):
        if distance.power != 1:
            raise TypeError(
                "a similarity distance must have power=1 "
                "(for unit vectors d^2 = 2 - 2 cos, so alpha enters as alpha / 2)"
            )
    else:
        raise TypeError(
            "distance must be an LpDistance(p=2) or a CosineSimilarity/"
            f"DotProductSimilarity, got {type(distance).__name__}"
        )


def hinge_sign_and_scale(distance: BaseDistance):
    """(sign, scale): the hinge is [sign (D_ap - D_an) + scale * alpha]_+.

    For similarities (inverted) sign = -1 and alpha is halved, since for unit
    vectors ||x - y||^2 = 2 - 2 cos(x, y).
    """
    return (-1.0, 0.5) if distance.is_inverted else (1.0, 1.0)


def distance_matrix(
    distance: BaseDistance, embeddings: torch.Tensor, ref_emb: Optional[torch.Tensor]
) -> torch.Tensor:
    """(B, M) distances in float32 or wider (``ref_emb=None``: among ``embeddings``),
    also under ``torch.autocast``.

    For the default squared Euclidean distance of unit vectors this is
    2 - 2 x . y from one matrix product: the same values as PML's cdist-then-
    square (which also expands the square), without a sqrt to differentiate.
    """
    embeddings = upcast_half(embeddings)
    ref_emb = None if ref_emb is None else upcast_half(ref_emb)
    # under torch.autocast the product would run in float16/bfloat16 again
    with torch.autocast(embeddings.device.type, enabled=False):
        if type(distance) is LpDistance and distance.p == 2 and distance.power == 2:
            x = torch.nn.functional.normalize(embeddings, p=2, dim=1)
            y = x if ref_emb is None else torch.nn.functional.normalize(ref_emb, p=2, dim=1)
            return (2 - 2 * x @ y.T).clamp(min=0)
        return distance(embeddings, ref_emb)


def margin_matrix(
    tree: Optional[HierarchicalClassTree],
    labels: torch.Tensor,
    ref_labels: torch.Tensor,
    beta: float,
    allow_unknown: bool,
    dtype: torch.dtype = torch.float64,
    margin_scale: float = 1.0,
) -> torch.Tensor:
    """(B, M) alpha[a, n] = beta + lambda (d_H(y_a, y_n) - s_{y_a}); beta without a tree."""
    if tree is None:
        return torch.full(
            (labels.shape[0], ref_labels.shape[0]), beta, dtype=dtype, device=labels.device
        )
    return tree.margin_table(labels, ref_labels, beta, allow_unknown, dtype, margin_scale)


def hinge_terms(
    distance: BaseDistance,
    tree: Optional[HierarchicalClassTree],
    beta: float,
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    ref_emb: torch.Tensor,
    ref_labels: torch.Tensor,
    allow_unknown: bool,
    margin_scale: float = 1.0,
):
    """(dist, alpha, offsets, sign): the hinge of (a, p, n) is
    [sign (dist[a, p] - dist[a, n]) + offsets[a, n]]_+ with offsets = scale * alpha."""
    dist = distance_matrix(distance, embeddings, None if ref_emb is embeddings else ref_emb)
    alpha = margin_matrix(
        tree,
        labels,
        ref_labels,
        beta,
        allow_unknown=allow_unknown,
        dtype=dist.dtype,
        margin_scale=margin_scale,
    )
    sign, scale = hinge_sign_and_scale(distance)
    offsets = alpha if scale == 1 else scale * alpha
    return dist, alpha, offsets, sign
