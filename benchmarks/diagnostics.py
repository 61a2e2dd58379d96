"""What HTL's margins do between two tree rebuilds: the per-rebuild diagnostics of
compare.py (docs/method.md, "Diagnosing HTL's margins").

For each tree, over the training batches until the next rebuild:

- d0 and the tree's size;
- alpha over the (anchor, negative) pairs of the batches, split into near pairs
  (the negative's class is among the anchor class's m - 1 nearest classes: the
  anchor-neighbour group the sampler draws around that class) and far pairs;
- the fraction of active triplets (positive hinge);
- the share of the summed hinge that comes from far negatives.

The hinge terms come from the library's own ``hinge_terms``, so this module
measures the margins the loss uses and does not restate them.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import numpy as np
import torch

from pml_htl._hinge import hinge_terms

#: alpha's summary: mean and these quantiles.
QUANTILES = (0.1, 0.5, 0.9)


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
        )
        self._reset_period()
        self._near = None  # nothing is recorded until the next start()
        return entry

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
        hinge = (sign * (dist[:, :, None] - dist[:, None, :]) + offsets[:, None, :]).clamp(min=0)
        valid = positive[:, :, None] & negative[:, None, :]
        hinge = torch.where(valid, hinge, 0)
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


def describe(entry: Dict[str, Any]) -> str:
    """One log line for a finished period."""

    def median(key):
        s = entry.get(key)
        return "-" if s is None else f"{s['p50']:.2f}"

    active = entry.get("active_fraction")
    share = entry.get("far_hinge_share")
    return (
        f"tree at iteration {entry['iteration']}: d0 {entry['d0']:.3f}, "
        f"median alpha near {median('alpha_near')} / far {median('alpha_far')}, "
        f"active triplets {'-' if active is None else f'{100 * active:.0f}%'}, "
        f"far negatives' share of the hinge {'-' if share is None else f'{100 * share:.0f}%'}"
    )
