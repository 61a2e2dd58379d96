"""Triplet bookkeeping shared by the loss and the miner, in memory linear in the triplets.

Depends on torch and the package's argument checks only."""

from __future__ import annotations

from typing import Tuple

import torch

from . import _sync
from ._validation import require

Triplets = Tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def same_class_masks(
    labels: torch.Tensor, ref_labels: torch.Tensor, remove_self: bool
) -> Tuple[torch.Tensor, torch.Tensor]:
    """(B, M) positive and negative masks; ``remove_self`` drops the diagonal
    (PML removes self-pairs only when ``ref_labels is labels``)."""
    same = labels[:, None] == ref_labels[None, :]
    negative = ~same
    if remove_self:
        same.fill_diagonal_(False)
    return same, negative


def _expand_by_anchor(
    first_anchor: torch.Tensor,
    first_other: torch.Tensor,
    second_anchor: torch.Tensor,
    second_other: torch.Tensor,
    num_anchors: int,
) -> Triplets:
    """Every (anchor, first, second) with first and second sharing their anchor."""
    order = torch.argsort(second_anchor, stable=True)
    second_anchor, second_other = second_anchor[order], second_other[order]
    per_anchor = torch.bincount(second_anchor, minlength=num_anchors)
    starts = torch.cumsum(per_anchor, 0) - per_anchor
    repeats = per_anchor[first_anchor]
    total = int(repeats.sum())
    device = first_anchor.device
    if total == 0:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return empty, empty.clone(), empty.clone()
    pair_of = torch.repeat_interleave(torch.arange(len(first_anchor), device=device), repeats)
    offset_in_group = torch.arange(total, device=device) - torch.repeat_interleave(
        torch.cumsum(repeats, 0) - repeats, repeats
    )
    second = second_other[starts[first_anchor[pair_of]] + offset_in_group]
    return first_anchor[pair_of], first_other[pair_of], second


def all_triplet_indices(positive_mask: torch.Tensor, negative_mask: torch.Tensor) -> Triplets:
    """All (a, p, n) with positive_mask[a, p] and negative_mask[a, n], no B x B x B tensor."""
    a1, p = torch.nonzero(positive_mask, as_tuple=True)
    a2, n = torch.nonzero(negative_mask, as_tuple=True)
    return _expand_by_anchor(a1, p, a2, n, positive_mask.shape[0])


def _is_integer(dtype: torch.dtype) -> bool:
    return not (dtype.is_floating_point or dtype.is_complex or dtype == torch.bool)


def check_indices_tuple(indices_tuple, num_anchors: int, num_refs: int) -> None:
    """indices_tuple: (a, p, n) or (a1, p, a2, n) of integer indices in range."""
    if not isinstance(indices_tuple, (tuple, list)) or len(indices_tuple) not in (3, 4):
        raise ValueError("indices_tuple must hold 3 (a, p, n) or 4 (a1, p, a2, n) tensors")
    bounds = (
        (num_anchors, num_refs, num_refs)
        if len(indices_tuple) == 3
        else (num_anchors, num_refs, num_anchors, num_refs)
    )
    for x in indices_tuple:
        if not torch.is_tensor(x) or x.ndim != 1 or not _is_integer(x.dtype):
            raise TypeError("indices_tuple must hold 1-D integer tensors")
    # a device-side assert on CUDA: no host-device sync
    for x, bound in zip(indices_tuple, bounds):
        if x.numel():
            in_range = ((x >= 0) & (x < bound)).all()
            require(in_range, f"indices_tuple holds an index outside [0, {bound})")
    pairs = (
        [indices_tuple[:3]] if len(indices_tuple) == 3 else [indices_tuple[:2], indices_tuple[2:]]
    )
    for group in pairs:
        if len({len(x) for x in group}) != 1:
            raise ValueError("indices_tuple: the tensors of a tuple must have equal lengths")


def pair_masks(indices_tuple, num_anchors: int, num_refs: int):
    """(positive, negative) (B, M) masks of a pair tuple (a1, p, a2, n), or None
    when a pair repeats (then the masks would count it once, the triplets twice)."""
    a1, p, a2, n = indices_tuple
    masks = []
    for a, r in ((a1, p), (a2, n)):
        mask = torch.zeros(num_anchors, num_refs, dtype=torch.bool, device=a.device)
        mask[a, r] = True
        if int(mask.sum()) != len(a):
            return None
        masks.append(mask)
    return tuple(masks)


def convert_to_triplets(indices_tuple, num_anchors: int) -> Triplets:
    """PML's pair (a1, p, a2, n) or triplet tuple as triplets, every (a, p, n)
    sharing an anchor, in memory linear in their number."""
    if len(indices_tuple) == 3:
        return tuple(x.long() for x in indices_tuple)
    if len(indices_tuple) != 4:
        raise ValueError(
            f"indices_tuple must hold 3 (a, p, n) or 4 (a1, p, a2, n) tensors, "
            f"got {len(indices_tuple)}"
        )
    a1, p, a2, n = (x.long() for x in indices_tuple)
    return _expand_by_anchor(a1, p, a2, n, num_anchors)


def upcast_half(x: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 to float32 (PML's distances cannot run in bfloat16 on CPU)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def ranked_active_counts(
    dist: torch.Tensor,
    offsets: torch.Tensor,
    positive_mask: torch.Tensor,
    negative_mask: torch.Tensor,
    sign: float,
    num_ranked: int,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The hinge [u_ap + v_an]_+ of every (a, p, n) of some anchor rows, by rank.

    u_ap = sign * dist[a, p] over positives, v_an = offsets[a, n] - sign * dist[a, n]
    over negatives (-inf elsewhere). Per row the ``num_ranked`` largest u
    (at least the row's number of positives; the row's length sorts them all)
    and, for each negative, c_an = #{p : u_ap > -v_an} (a binary search): the
    c_an largest u_ap are exactly the positives active with n.

    Returns (u_top, u_pos, v, c): (R, num_ranked) sorted u, descending, and
    their columns; (R, M) v and c (0 off the negatives).
    """
    neg_inf = float("-inf")
    u = torch.where(positive_mask, sign * dist, neg_inf)
    if num_ranked == u.shape[1]:
        u_top, u_pos = torch.sort(u, dim=1, descending=True)
    else:
        u_top, u_pos = torch.topk(u, num_ranked, dim=1)  # descending; padding -inf
    v = torch.where(negative_mask, offsets - sign * dist, neg_inf)
    c = num_ranked - torch.searchsorted(u_top.flip(1).contiguous(), -v, right=True)
    return u_top, u_pos, v, c


def _num_ranked(num_pos: torch.Tensor, num_cols: int) -> int:
    """How many u per row to rank: the most positives of a row where reading
    that number back is free, else every column (sorting the whole row costs
    more than a top-k, but no host-device sync)."""
    if _sync.syncs_are_costly(num_pos.device):
        return num_cols
    return int(num_pos.max()) if num_pos.numel() else 0


class AllTripletHingeSum(torch.autograd.Function):
    """sum over all (a, p, n) of [u_ap + v_an]_+ for a (B, M) distance matrix.

    u_ap = sign * dist[a, p] over positives, v_an = offsets[a, n] - sign * dist[a, n]
    over negatives. The B (t - 1)(B - t) terms are never stored (sums are
    accumulated in float64). Per anchor the
    few positives are sorted; for each negative, c_an = #{p : u_ap > -v_an}
    (a binary search) says that exactly the c_an largest u_ap are active, so
    the negative contributes c_an v_an + (sum of the c_an largest u_ap). The
    gradient of a hinge sum is a count of active terms: c_an for v_an, and
    #{n : c_an >= rank of p} for u_ap (a per-row histogram of c). It is
    computed in the forward pass and stored as one (B, M) matrix. No value is
    read back to the host on CUDA (``ranked_active_counts`` ranks whole rows).

    Returns (sum, number of active terms).
    """

    @staticmethod
    def forward(ctx, dist, offsets, positive_mask, negative_mask, sign, max_elements):
        B, M = dist.shape
        grad = torch.zeros_like(dist)
        total = torch.zeros((), dtype=torch.float64, device=dist.device)
        active = torch.zeros((), dtype=torch.long, device=dist.device)
        num_pos = positive_mask.sum(1)
        rows_per_chunk = max(1, max_elements // max(M, 1))
        for start in range(0, B, rows_per_chunk):
            rows = slice(start, start + rows_per_chunk)
            P = _num_ranked(num_pos[rows], M)
            if P == 0:
                continue
            d = dist[rows]
            u_top, u_pos, v, c = ranked_active_counts(
                d, offsets[rows], positive_mask[rows], negative_mask[rows], sign, P
            )
            # top_sums[:, r]: the sum of the r largest u (a 0 column first)
            finite_top = torch.where(torch.isfinite(u_top), u_top, 0)
            top_sums = torch.nn.functional.pad(torch.cumsum(finite_top, 1), (1, 0))
            terms = torch.where(c > 0, c * v + top_sums.gather(1, c), 0)
            total += terms.sum(dtype=torch.float64)
            active += c.sum()
            # positive of rank r is active with the negatives whose c >= r
            hist = torch.zeros(u_top.shape[0], P + 1, dtype=torch.long, device=d.device)
            hist.scatter_add_(1, c, torch.ones_like(c))
            k = hist[:, 1:].flip(1).cumsum(1).flip(1)
            g = grad[rows]
            g.scatter_add_(1, u_pos, (sign * k).to(g.dtype))
            g.sub_(c.to(g.dtype), alpha=sign)
        ctx.save_for_backward(grad)
        ctx.mark_non_differentiable(active)
        return total.to(dist.dtype), active

    @staticmethod
    def backward(ctx, grad_total, _grad_active):
        (grad,) = ctx.saved_tensors
        return grad * grad_total, None, None, None, None, None


def all_triplet_hinge_sum(
    dist: torch.Tensor,
    offsets: torch.Tensor,
    positive_mask: torch.Tensor,
    negative_mask: torch.Tensor,
    sign: float,
    max_elements: int = 1 << 21,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """See `AllTripletHingeSum`; ``max_elements`` bounds each chunk's working set."""
    return AllTripletHingeSum.apply(
        dist, offsets.to(dist.dtype), positive_mask, negative_mask, sign, max_elements
    )


def violating_triplets(
    dist: torch.Tensor,
    offsets: torch.Tensor,
    positive_mask: torch.Tensor,
    negative_mask: torch.Tensor,
    sign: float,
    max_elements: int = 1 << 22,
) -> Triplets:
    """Every (a, p, n) with u_ap + v_an > 0 (see ``ranked_active_counts``),
    without listing the others: for each (a, n), its c_an highest-ranked
    positives. ``max_elements`` bounds each chunk of anchor rows.

    The number of triplets sizes the output, so it is read back: once per
    call where syncs are costly (CUDA), once per chunk elsewhere.
    """
    B, M = dist.shape
    num_pos = positive_mask.sum(1)
    rows_per_chunk = max(1, max_elements // max(M, 1))
    costly = _sync.syncs_are_costly(dist.device)
    found, pending = [], []
    for start in range(0, B, rows_per_chunk):
        rows = slice(start, start + rows_per_chunk)
        P = _num_ranked(num_pos[rows], M)
        if P == 0:
            continue
        _, u_pos, _, c = ranked_active_counts(
            dist[rows], offsets[rows], positive_mask[rows], negative_mask[rows], sign, P
        )
        pending.append((u_pos, c, start))
        if not costly:
            found.append(_list_active(pending))
            pending = []
    if pending:
        found.append(_list_active(pending))
    if not found:
        empty = torch.zeros(0, dtype=torch.long, device=dist.device)
        return empty, empty.clone(), empty.clone()
    return tuple(torch.cat(x) for x in zip(*found))


def _list_active(chunks) -> Triplets:
    """(a, p, n) of the active terms of chunks (u_pos, c, first row) of equal
    width, after one read-back of their number."""
    u_pos = torch.cat([u for u, _, _ in chunks])
    c = torch.cat([c for _, c, _ in chunks])
    anchor = torch.cat([torch.arange(s, s + len(x), device=x.device) for _, x, s in chunks])
    per_pair = c.flatten()
    total = int(per_pair.sum())  # the read-back
    pair = torch.repeat_interleave(per_pair, output_size=total)
    rank = torch.arange(total, device=c.device) - (torch.cumsum(per_pair, 0) - per_pair)[pair]
    row, n = pair // c.shape[1], pair % c.shape[1]
    return anchor[row], u_pos[row, rank], n
