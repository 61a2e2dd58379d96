"""What HTL's margins do between two tree rebuilds: the per-rebuild diagnostics of
compare.py (docs/method.md, "Diagnosing HTL's margins").

For each tree, over the training batches until the next rebuild:

- d0 and the tree's size;
- alpha over the (anchor, negative) pairs of the batches, split into near pairs
  (the negative's class is among the anchor class's m - 1 nearest classes: the
  anchor-neighbour group the sampler draws around that class) and far pairs;
- the fraction of active triplets (positive hinge);
- the share of the summed hinge that comes from far negatives;
- the hinge argument D(a, p) - D(a, n) + alpha, averaged per pair of (anchor
  class, negative class), against the pair's separation d(y_a, y_n) - s_{y_a}
  in the tree: a least-squares line, the fraction of pairs whose mean
  argument is positive (pairs that stay active), the same mean against
  its expectation s_a - d + alpha, and the line through that expectation.
  docs/method.md, "Why the margin moves", predicts a slope of -(1 - lambda)
  (with the default squared distance).

The hinge terms come from the library's own ``hinge_terms``, so this module
measures the margins the loss uses and does not restate them.
"""

from __future__ import annotations

import warnings
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from pml_htl._hinge import hinge_terms

#: alpha's summary: mean and these quantiles.
QUANTILES = (0.1, 0.5, 0.9)


#: Quantile bins of the separation in the hinge argument's summary.
ARGUMENT_BINS = 5


def argument_summary(
    mean_argument: np.ndarray, separation: np.ndarray, expected: np.ndarray, margin_scale: float
) -> Optional[Dict[str, Any]]:
    """The per-class-pair mean hinge argument against the pair's separation
    d - s_a: a least-squares line (slope, intercept, r), the fraction of pairs
    with a positive mean, the line of the mean against its expectation, and
    the means in quantile bins of the separation. None with fewer than 3 pairs
    (non-finite ones left out) or a single separation."""
    finite = np.isfinite(mean_argument) & np.isfinite(separation) & np.isfinite(expected)
    mean_argument, separation, expected = (v[finite] for v in (mean_argument, separation, expected))
    if mean_argument.size < 3 or np.ptp(separation) == 0 or np.ptp(expected) == 0:
        return None  # too few pairs, or all at one separation: no line to fit
    with warnings.catch_warnings():  # near-constant inputs (tiny data): the fit is still defined
        warnings.simplefilter("ignore", np.exceptions.RankWarning)
        slope, intercept = np.polyfit(separation, mean_argument, 1)
        fit_slope, fit_intercept = np.polyfit(expected, mean_argument, 1)
        expected_slope, expected_intercept = np.polyfit(separation, expected, 1)
    edges = np.quantile(separation, np.linspace(0, 1, ARGUMENT_BINS + 1))
    bins = []
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (separation >= low) & (separation <= high)
        if inside.any():
            bins.append(
                {
                    "separation": float(separation[inside].mean()),
                    "mean_argument": float(mean_argument[inside].mean()),
                    "pairs": int(inside.sum()),
                }
            )
    r = np.corrcoef(separation, mean_argument)[0, 1] if np.ptp(mean_argument) > 0 else 0.0
    return {
        "pairs": int(mean_argument.size),
        "slope": float(slope),
        "intercept": float(intercept),
        "r": float(r),
        "predicted_slope": -(1.0 - margin_scale),
        "positive_pairs": float((mean_argument > 0).mean()),
        "mean": float(mean_argument.mean()),
        "against_expected": {"slope": float(fit_slope), "intercept": float(fit_intercept)},
        # the same line through the expectation itself: what the tree alone predicts
        "expected": {"slope": float(expected_slope), "intercept": float(expected_intercept)},
        "bins": bins,
    }


def summarise(values: np.ndarray) -> Optional[Dict[str, float]]:
    """count, mean and the QUANTILES of ``values``; None when empty."""
    if values.size == 0:
        return None
    out = {"count": int(values.size), "mean": float(values.mean())}
    for q, v in zip(QUANTILES, np.quantile(values, QUANTILES)):
        out[f"p{int(round(100 * q))}"] = float(v)
    return out


class MarginDiagnostics:
    """A forward hook on a HierarchicalTripletLoss that summarises its margins,
    active triplets and far-negative share per tree (``start`` at each rebuild).

    Args:
        loss: the HierarchicalTripletLoss (not a distributed wrapper).
        classes_per_anchor: m, the size of an anchor-neighbour group.
    """

    def __init__(self, loss, classes_per_anchor: int):
        self.loss = loss
        self.near_count = classes_per_anchor - 1
        self.entries: List[Dict[str, Any]] = []
        self._near: Optional[torch.Tensor] = None  # (C, C) near[i, j] by tree index
        self._pair_terms = None  # (separation, expected argument), (C, C) each
        self._reset_period()
        # positional arguments only, as PML's trainers call a loss: a hook with kwargs
        # would put an int-keyed dict on the loss, which PML's record-keeper cannot log
        self.handle = loss.register_forward_hook(self._on_forward)

    def _reset_period(self) -> None:
        self._alpha_near: List[np.ndarray] = []
        self._alpha_far: List[np.ndarray] = []
        self._triplets = 0
        self._active = 0
        self._hinge_total = 0.0
        self._hinge_far = 0.0
        self._argument_sum: Optional[np.ndarray] = None  # (C, C) by tree index
        self._argument_count: Optional[np.ndarray] = None

    def start(self, tree, iteration: int) -> None:
        """A new tree: close the running period and open one for ``tree``."""
        self.finish()
        tree = tree.to(torch.device("cpu"))
        labels = tree.labels
        k = min(self.near_count, tree.num_classes - 1)
        near = torch.zeros(tree.num_classes, tree.num_classes, dtype=torch.bool)
        if k > 0:
            neighbours = tree.index_of(tree.nearest_classes(labels, k))
            near.scatter_(1, neighbours, True)
        self._near = near
        self._pair_terms = _pair_terms(tree, self.loss)
        self.entries.append(
            {
                "iteration": iteration,
                "d0": float(tree.d0),
                "num_classes": int(tree.num_classes),
                "margin_scale": float(getattr(self.loss, "margin_scale", 1.0)),
                "beta": float(self.loss.beta),
            }
        )

    def finish(self) -> Optional[Dict[str, Any]]:
        """Write the running period's numbers into its entry; returns the entry."""
        if not self.entries or "active_fraction" in self.entries[-1]:
            return None
        entry = self.entries[-1]
        near = np.concatenate(self._alpha_near) if self._alpha_near else np.zeros(0)
        far = np.concatenate(self._alpha_far) if self._alpha_far else np.zeros(0)
        entry.update(
            alpha_near=summarise(near),
            alpha_far=summarise(far),
            triplets=self._triplets,
            active_fraction=self._active / self._triplets if self._triplets else None,
            far_hinge_share=(self._hinge_far / self._hinge_total if self._hinge_total else None),
            hinge_argument=self._argument_entry(entry["margin_scale"]),
        )
        self._reset_period()
        self._near = None  # nothing is recorded until the next start()
        return entry

    def _argument_entry(self, margin_scale: float) -> Optional[Dict[str, Any]]:
        if self._argument_count is None or self._pair_terms is None:
            return None
        separation, expected = self._pair_terms
        seen = self._argument_count > 0
        np.fill_diagonal(seen, False)
        mean = self._argument_sum[seen] / self._argument_count[seen]
        return argument_summary(mean, separation[seen], expected[seen], margin_scale)

    def close(self) -> List[Dict[str, Any]]:
        self.finish()
        self.handle.remove()
        return self.entries

    @torch.no_grad()
    def _on_forward(self, module, args, output) -> None:
        if not module.training or self._near is None or len(args) < 2:
            return
        embeddings, labels = args[0].detach(), args[1]
        tree = module.tree
        if tree is None or embeddings.shape[0] == 0:
            return
        tree = tree.to(embeddings.device)
        dist, alpha, offsets, sign = hinge_terms(
            module.distance,
            tree,
            module.beta,
            embeddings.float(),
            labels,
            embeddings.float(),
            labels,
            allow_unknown=True,
            margin_scale=getattr(module, "margin_scale", 1.0),
        )
        same = labels[:, None] == labels[None, :]
        eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        positive, negative = same & ~eye, ~same
        index, known = tree.index_of(labels, allow_unknown=True)
        index = index.cpu()
        near = self._near[index[:, None], index[None, :]].to(labels.device)
        near &= (known[:, None] & known[None, :]).to(labels.device)
        # hinge of (a, p, n): sign (d_ap - d_an) + offset_an, for positive (a, p), negative (a, n)
        argument = sign * (dist[:, :, None] - dist[:, None, :]) + offsets[:, None, :]
        valid = positive[:, :, None] & negative[:, None, :]
        hinge = torch.where(valid, argument.clamp(min=0), 0)
        self._add_pair_arguments(torch.where(valid, argument, 0).sum(1), valid.sum(1), index, known)
        far_n = (negative & ~near)[:, None, :]
        self._triplets += int(valid.sum())
        self._active += int(((hinge > 0) & valid).sum())
        self._hinge_total += float(hinge.sum())
        self._hinge_far += float(torch.where(far_n, hinge, 0).sum())
        # alpha once per (anchor class, negative class) pair of the batch
        classes, first = np.unique(labels.cpu().numpy(), return_index=True)
        rows = torch.as_tensor(first, device=labels.device)
        sub_alpha = alpha[rows][:, rows].double().cpu().numpy()
        sub_near = near[rows][:, rows].cpu().numpy()
        off_diagonal = ~np.eye(len(classes), dtype=bool)
        self._alpha_near.append(sub_alpha[off_diagonal & sub_near])
        self._alpha_far.append(sub_alpha[off_diagonal & ~sub_near])

    def _add_pair_arguments(self, sums, counts, index, known) -> None:
        """Add each (anchor, negative) sample pair's summed argument over its
        positives to its (anchor class, negative class) cell."""
        if self._pair_terms is None:
            return
        C = self._near.shape[0]
        if self._argument_sum is None:
            self._argument_sum = np.zeros((C, C))
            self._argument_count = np.zeros((C, C))
        rows, cols = torch.nonzero(counts > 0, as_tuple=True)
        keep = (known[rows] & known[cols]).cpu()
        rows, cols = rows.cpu()[keep], cols.cpu()[keep]
        ia, ib = index[rows].numpy(), index[cols].numpy()
        np.add.at(self._argument_sum, (ia, ib), sums[rows, cols].double().cpu().numpy())
        np.add.at(self._argument_count, (ia, ib), counts[rows, cols].double().cpu().numpy())


def _pair_terms(tree, loss):
    """(C, C) separation d(y_a, y_n) - s_{y_a} and expected argument
    s_a - d + alpha of every pair of the tree's classes, for the default
    squared distance (None for other distances: the hinge is in other units)."""
    distance = loss.distance
    squared = getattr(distance, "p", None) == 2 and getattr(distance, "power", None) == 2
    if not squared or distance.is_inverted:
        return None
    labels = tree.labels
    d = tree.class_distance(labels[:, None], labels[None, :]).double().numpy()
    spread = tree.spreads.double().numpy()[:, None]
    alpha = tree.margin(
        labels[:, None], labels[None, :], float(loss.beta),
        margin_scale=float(getattr(loss, "margin_scale", 1.0)),
    ).double().numpy()  # fmt: skip
    return d - spread, spread - d + alpha


def describe(entry: Dict[str, Any]) -> str:
    """One log line for a finished period."""

    def median(key):
        s = entry.get(key)
        return "-" if s is None else f"{s['p50']:.2f}"

    active = entry.get("active_fraction")
    share = entry.get("far_hinge_share")
    argument = entry.get("hinge_argument")
    line = (
        f"tree at iteration {entry['iteration']}: d0 {entry['d0']:.3f}, "
        f"median alpha near {median('alpha_near')} / far {median('alpha_far')}, "
        f"active triplets {'-' if active is None else f'{100 * active:.0f}%'}, "
        f"far negatives' share of the hinge {'-' if share is None else f'{100 * share:.0f}%'}"
    )
    if argument is not None:
        line += (
            f", hinge argument against separation: slope {argument['slope']:+.2f} "
            f"(predicted {argument['predicted_slope']:+.2f}), "
            f"{100 * argument['positive_pairs']:.0f}% of class pairs active on average"
        )
    return line
