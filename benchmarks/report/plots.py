"""The comparison's figures as PNG bytes: R@1 against iteration, the tree against
the superclasses, and HTL's margins per tree."""

from __future__ import annotations

import warnings
from typing import Any, Collection, Dict, List, Mapping

import numpy as np

from benchmarks.config import RunConfig
from benchmarks.report.png import png_bytes
from benchmarks.report.tables import describe_run, flatten_diagnostics


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
    band = ", band: min to max over seeds" if len(cfg.seeds) > 1 else ""
    ax.set_title(f"R@1 during training, mean over seeds{band}\n{describe_run(cfg)}", fontsize=10)
    ax.grid(alpha=0.3)
    _legend_below(fig, ax)
    return png_bytes(fig)


def hierarchy_png(runs: List[Dict[str, Any]], cfg: RunConfig, titles: Mapping[str, str]) -> bytes:
    """Dendrogram purity and ARI against iteration (mean over seeds), each beside its
    floor (random trees of the same classes, dashed), on their whole range: purity
    in [0, 1], ARI in [-0.1, 1] (0 is chance, 1 the superclasses exactly)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    measures = [
        ("dendrogram_purity", "dendrogram purity", (0, 1)),
        ("adjusted_rand_index", "ARI of the cut into the superclasses' number", (-0.1, 1)),
    ]
    for ax, (key, label, limits) in zip(axes, measures):
        lowest = limits[0]
        for loss in cfg.losses:
            mine = [r for r in runs if r["loss"] == loss and r.get("hierarchy")]
            if not mine:
                continue
            its = [e["iteration"] for e in mine[0]["hierarchy"]]
            values = np.array([[_nan(e[key]) for e in r["hierarchy"]] for r in mine])
            (line,) = ax.plot(its, values.mean(0), marker="o", ms=3, label=titles[loss])
            floor = np.array([[_nan(e["random_" + key]) for e in r["hierarchy"]] for r in mine])
            ax.plot(its, floor.mean(0), "--", color=line.get_color(), alpha=0.7)
            shown = np.concatenate([values.mean(0), floor.mean(0)])
            if np.isfinite(shown).any():
                lowest = min(lowest, float(np.nanmin(shown)) - 0.02)
        ax.set_ylim(lowest, limits[1])
        ax.set_xlabel("iteration (tree built)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].plot([], [], "--", color="grey", label="dashed: random trees (the floor)")
    fig.suptitle(f"The class tree against the superclasses\n{describe_run(cfg)}", fontsize=10)
    _legend_below(fig, axes[0])
    return png_bytes(fig)


def diagnostics_png(runs: List[Dict[str, Any]], cfg: RunConfig, titles: Mapping[str, str]) -> bytes:
    """Per tree (mean over seeds): the median margin of far (solid) and near
    (dashed) class pairs, and the fraction of active triplets (solid) with the far
    negatives' share of the hinge (dotted); and for the last tree, each class
    pair's mean hinge argument against its separation d - s_a (binned, every
    seed's bins), beside the line beta - (1 - lambda)(d - s_a) the moving-target
    analysis predicts (dashed). Colours tell the losses apart, line styles the
    series."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    with_argument = any(e.get("hinge_argument") for r in runs for e in (r.get("diagnostics") or []))
    fig, axes = plt.subplots(
        1, 3 if with_argument else 2, figsize=(15 if with_argument else 10, 4.8)
    )
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
            with warnings.catch_warnings():  # a quantity no seed recorded: NaN, not drawn
                warnings.simplefilter("ignore", RuntimeWarning)
                return np.nanmean(np.array(rows, dtype=float), axis=0)

        (line,) = axes[0].plot(its, series("alpha_far_p50"), "-", marker="o", ms=3,
                               label=titles[loss])  # fmt: skip
        colour = line.get_color()
        axes[0].plot(its, series("alpha_near_p50"), "--", marker="s", ms=3, color=colour)
        axes[1].plot(its, series("active_fraction"), "-", marker="o", ms=3, color=colour)
        axes[1].plot(its, series("far_hinge_share"), ":", marker="^", ms=3, color=colour)
        if with_argument:
            _argument_panel(axes[2], [entries[length - 1] for entries in mine], colour)
    axes[0].set_ylabel("median margin alpha (squared distance; 4 = antipodal)")
    axes[1].set_ylabel("fraction")
    axes[1].set_ylim(0, 1)
    for ax in axes[:2]:
        ax.set_xlabel("iteration (tree built)")
        ax.grid(alpha=0.3)
    if with_argument:
        axes[2].axhline(0, color="black", lw=0.8)
        axes[2].set_xlabel("separation d(y_a, y_n) - s_a in the last tree")
        axes[2].set_ylabel("mean hinge argument of the class pair")
        axes[2].grid(alpha=0.3)
        axes[2].legend(
            [Line2D([], [], ls="-", marker="o", color="black", ms=4),
             Line2D([], [], ls="--", color="black")],
            ["measured (binned by separation)", "predicted: beta - (1 - lambda)(d - s_a)"],
            handlelength=4, fontsize=8, loc="upper right",
        )  # fmt: skip
    style = dict(color="black", ms=4)
    axes[0].legend(
        [Line2D([], [], ls="-", marker="o", **style), Line2D([], [], ls="--", marker="s", **style)],
        ["far pairs", "near pairs (anchor-neighbour group)"],
        handlelength=4, fontsize=8, loc="upper left",
    )  # fmt: skip
    axes[1].legend(
        [Line2D([], [], ls="-", marker="o", **style), Line2D([], [], ls=":", marker="^", **style)],
        ["active triplets", "far negatives' share of the hinge"],
        handlelength=4, fontsize=8, loc="upper left",
    )  # fmt: skip
    fig.suptitle(f"HTL's margins per tree, mean over seeds\n{describe_run(cfg)}", fontsize=10)
    _legend_below(
        fig, None, handles=[ln for ln in axes[0].lines if not ln.get_label().startswith("_")]
    )
    return png_bytes(fig)


def _argument_panel(ax, entries: List[Dict[str, Any]], colour) -> None:
    """One loss's last-tree hinge arguments: every seed's bins, and the line the
    analysis predicts over their range."""
    measured = [e["hinge_argument"] for e in entries if e.get("hinge_argument")]
    if not measured:
        return
    for argument in measured:
        bins = argument["bins"]
        ax.plot([b["separation"] for b in bins], [b["mean_argument"] for b in bins], "-",
                marker="o", ms=3, color=colour, alpha=0.8)  # fmt: skip
    entry = entries[0]
    xs = np.array([b["separation"] for a in measured for b in a["bins"]])
    x = np.linspace(xs.min(), xs.max(), 2)
    ax.plot(x, entry["beta"] - (1 - entry["margin_scale"]) * x, "--", color=colour)


def _legend_below(fig, ax, handles=None) -> None:
    """The losses' legend under the axes, off the data, in as many columns as the
    longest label lets fit the figure's width; the PNG grows to hold it."""
    if handles is None:
        handles = [h for h in ax.get_lines() if not h.get_label().startswith("_")]
    fig.tight_layout()
    if not handles:
        return
    longest = max(len(h.get_label()) for h in handles)
    # at fontsize 8 a character is about 0.065 in; the handle and the gap about 0.7 in
    fits = int(fig.get_figwidth() // (0.7 + 0.065 * longest))
    columns = max(1, min(3, len(handles), fits))
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=columns,
               fontsize=8, handlelength=3, frameon=False)  # fmt: skip


def _nan(value) -> float:
    return float("nan") if value is None else float(value)
