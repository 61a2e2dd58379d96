"""The comparison's figures as PNG bytes: R@1 against iteration, the tree against
the superclasses, and HTL's margins per tree."""

from __future__ import annotations

import io
from typing import Any, Collection, Dict, List, Mapping

import numpy as np

from benchmarks.config import RunConfig
from benchmarks.report.tables import flatten_diagnostics


def convergence_png(
    runs: List[Dict[str, Any]], cfg: RunConfig, titles: Mapping[str, str], dashed: Collection[str]
) -> bytes:
    """R@1 against iteration, one line per loss (``dashed``: the ablations)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for loss in cfg.losses:
        mine = [r for r in runs if r["loss"] == loss]
        if not mine:
            continue
        its = [p["iteration"] for p in mine[0]["curve"]]
        values = np.array([[100 * p["recall_at_1"] for p in r["curve"]] for r in mine])
        mean = values.mean(0)
        style = "--" if loss in dashed else "-"
        ax.plot(its, mean, style, marker="o", ms=3, label=titles[loss])
        if len(mine) > 1:
            ax.fill_between(its, values.min(0), values.max(0), alpha=0.15)
    ax.set_xlabel("iteration")
    ax.set_ylabel("R@1 (%) on unseen test classes")
    ax.set_title(f"Convergence on {cfg.dataset} (mean over seeds {cfg.seeds})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png_bytes(fig)


def hierarchy_png(runs: List[Dict[str, Any]], cfg: RunConfig, titles: Mapping[str, str]) -> bytes:
    """Dendrogram purity and ARI against iteration (mean over seeds), the random-tree
    floor dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    measures = [("dendrogram_purity", "dendrogram purity"), ("adjusted_rand_index", "ARI")]
    for ax, (key, label) in zip(axes, measures):
        for loss in cfg.losses:
            mine = [r for r in runs if r["loss"] == loss and r.get("hierarchy")]
            if not mine:
                continue
            its = [e["iteration"] for e in mine[0]["hierarchy"]]
            values = np.array([[_nan(e[key]) for e in r["hierarchy"]] for r in mine])
            (line,) = ax.plot(its, values.mean(0), marker="o", ms=3, label=titles[loss])
            floor = np.array([[_nan(e["random_" + key]) for e in r["hierarchy"]] for r in mine])
            ax.plot(its, floor.mean(0), "--", color=line.get_color(), alpha=0.7,
                    label=f"{titles[loss]}: random tree")  # fmt: skip
        ax.set_xlabel("iteration")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Class tree against the superclasses of {cfg.dataset}")
    fig.tight_layout()
    return _png_bytes(fig)


def diagnostics_png(runs: List[Dict[str, Any]], cfg: RunConfig, titles: Mapping[str, str]) -> bytes:
    """Per tree (mean over seeds): the median margin of near and far pairs, and the
    fraction of active triplets with the far negatives' share of the hinge."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for loss in cfg.losses:
        mine = [r["diagnostics"] for r in runs if r["loss"] == loss and r.get("diagnostics")]
        if not mine:
            continue
        length = min(len(entries) for entries in mine)
        its = [e["iteration"] for e in mine[0][:length]]

        def series(key):
            rows = [
                [_nan(flatten_diagnostics(e).get(key)) for e in entries[:length]]
                for entries in mine
            ]
            return np.nanmean(np.array(rows, dtype=float), axis=0)

        (line,) = axes[0].plot(its, series("alpha_far_p50"), marker="o", ms=3,
                               label=f"{titles[loss]}: far")  # fmt: skip
        axes[0].plot(its, series("alpha_near_p50"), "--", marker="o", ms=3,
                     color=line.get_color(), label=f"{titles[loss]}: near")  # fmt: skip
        axes[1].plot(its, series("active_fraction"), marker="o", ms=3, color=line.get_color(),
                     label=f"{titles[loss]}: active triplets")  # fmt: skip
        axes[1].plot(its, series("far_hinge_share"), ":", marker="o", ms=3,
                     color=line.get_color(), label=f"{titles[loss]}: far share")  # fmt: skip
    axes[0].set_ylabel("median margin alpha (squared units)")
    axes[1].set_ylabel("fraction")
    for ax in axes:
        ax.set_xlabel("iteration (tree built)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.suptitle(f"HTL's margins per tree on {cfg.dataset} (mean over seeds)")
    fig.tight_layout()
    return _png_bytes(fig)


def _png_bytes(fig) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()


def _nan(value) -> float:
    return float("nan") if value is None else float(value)
