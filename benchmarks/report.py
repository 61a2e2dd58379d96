"""Reports of benchmarks/compare.py: summary over seeds, markdown table, CSV, convergence plot."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from typing import Any, Collection, Dict, List, Mapping, Tuple, Union

import numpy as np

from benchmarks.stats import convergence, significance

METRIC_COLUMNS = [
    ("precision_at_1", "P@1"),
    ("mean_average_precision_at_r", "MAP@R"),
    ("r_precision", "R-Prec"),
    ("NMI", "NMI"),
    ("AMI", "AMI"),
]
#: Where the data have verification pairs (cfg["verification"]): the k-fold
#: accuracy's mean and its std over the folds.
VERIFICATION_COLUMNS = [
    ("lfw_verification_accuracy", "LFW verif."),
    ("lfw_verification_accuracy_std", "LFW verif. fold std"),
]
#: Columns that are not scores: no best value to mark.
UNRANKED = {"lfw_verification_accuracy_std"}


#: The learned tree against the data set's superclasses (benchmarks/evaluation/hierarchy.py):
#: the last tree's values, and those of random trees of the same classes.
HIERARCHY_COLUMNS = [
    ("dendrogram_purity", "dendrogram purity"),
    ("random_dendrogram_purity", "random tree"),
    ("adjusted_rand_index", "ARI"),
    ("random_adjusted_rand_index", "random tree"),
]


def atomic_write(path: str, data: Union[str, bytes]) -> None:
    """Write to a temporary file beside ``path``, then rename: never a half file."""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    binary = isinstance(data, bytes)
    try:
        with os.fdopen(
            fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})
        ) as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def metric_columns(cfg) -> List[Tuple[str, str]]:
    return METRIC_COLUMNS + (VERIFICATION_COLUMNS if cfg.get("verification") else [])


def metric_keys(cfg) -> List[str]:
    return [f"recall_at_{k}" for k in cfg["recall_ks"]] + [k for k, _ in metric_columns(cfg)]


def summarize(runs: List[Dict[str, Any]], cfg) -> Dict[str, Dict[str, Any]]:
    """Per loss: the seeds, and (mean, std) over them of every metric and timing."""
    table: Dict[str, Dict[str, Any]] = {}
    for loss in cfg["losses"]:
        mine = [r for r in runs if r["loss"] == loss]
        if not mine:
            continue
        row = {"seeds": [r["seed"] for r in mine]}
        for key in metric_keys(cfg) + ["seconds_per_iteration", "tree_seconds"]:
            values = [r[key] if key in r else r["final"].get(key) for r in mine]
            values = [v for v in values if v is not None]
            if values:
                row[key] = (float(np.mean(values)), float(np.std(values)))
        for key, _ in HIERARCHY_COLUMNS:
            values = [r["hierarchy"][-1][key] for r in mine if r.get("hierarchy")]
            values = [v for v in values if v is not None]
            if values:
                row[key] = (float(np.mean(values)), float(np.std(values)))
        table[loss] = row
    return table


def markdown_table(table, cfg, titles: Mapping[str, str], statistics=None) -> str:
    cols = [(f"recall_at_{k}", f"R@{k}") for k in cfg["recall_ks"]] + [
        c for c in metric_columns(cfg) if any(c[0] in row for row in table.values())
    ]
    best = {}
    for key, _ in cols:
        values = [row[key][0] for row in table.values() if key in row and key not in UNRANKED]
        if values:
            best[key] = max(values)
    statistics = statistics or {}
    intervals = statistics.get("intervals", {})
    tests = statistics.get("tests", [])
    speed = statistics.get("convergence", {})
    reference = speed.get("reference")
    speed_cols = (["iters to 95% of triplet"] if reference else []) + ["iters to 95% of own"]
    head = (
        "| loss | "
        + " | ".join(t for _, t in cols)
        + " | "
        + " | ".join(speed_cols)
        + " | s / iter | tree s | n |"
    )
    lines = [head, "|" + "---|" * (len(cols) + len(speed_cols) + 4)]
    for loss, row in table.items():
        cells = []
        for key, _ in cols:
            if key not in row:
                cells.append("–")
                continue
            mean = row[key][0]
            interval = intervals.get(loss, {}).get(key)
            half = None if interval is None else interval["half_width"]
            text = f"{100 * mean:.1f}" + ("" if half is None else f" ± {100 * half:.1f}")
            text = f"**{text}**" if key in best and math.isclose(mean, best[key]) else text
            cells.append(text + significance.marks(tests, loss, key))
        loss_speed = speed.get("losses", {}).get(loss, {})
        if reference:
            cells.append(convergence.cell(loss_speed.get("to_reference")))
        cells.append(convergence.cell(loss_speed.get("to_own_final")))
        spi = row.get("seconds_per_iteration", (float("nan"), 0))[0]
        tree_s = row.get("tree_seconds", (0.0, 0))[0]
        lines.append(
            f"| {titles[loss]} | "
            + " | ".join(cells)
            + f" | {spi:.3f} | {tree_s:.0f} | {len(row['seeds'])} |"
        )
    return "\n".join(lines) + "\n"


def csv_text(runs, cfg) -> str:
    keys = metric_keys(cfg)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["loss", "seed", *keys, "seconds_per_iteration", "tree_seconds"])
    for r in runs:
        writer.writerow(
            [r["loss"], r["seed"]]
            + [r["final"].get(k, "") for k in keys]
            + [r["seconds_per_iteration"], r["tree_seconds"]]
        )
    return buf.getvalue()


def convergence_png(runs, cfg, titles: Mapping[str, str], dashed: Collection[str]) -> bytes:
    """R@1 against iteration, one line per loss (``dashed``: the ablations)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for loss in cfg["losses"]:
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
    ax.set_title(f"Convergence on {cfg['dataset']} (mean over seeds {cfg['seeds']})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png_bytes(fig)


def results_markdown(table, cfg, titles: Mapping[str, str], statistics=None) -> str:
    """results.md: a short header, the table, the paired tests, HTL's diagnostics,
    the tree against the superclasses, and the tuning."""
    statistics = statistics or {}
    speed = statistics.get("convergence", {})
    tuned = " with tuned hyper-parameters" if cfg.get("tuning") else ""
    header = (
        f"# {cfg['dataset']}: final accuracy after {cfg['epochs'] * cfg['iters_per_epoch']} "
        f"iterations{tuned} (%, mean ± half width of the 95% t interval over the n seeds)\n\n"
        f"Training augmentation: {cfg.get('augment', 'none')}. "
        "s / iter: training wall time per iteration, tree rebuilds included, evaluation "
        "excluded; tree s: time spent building class trees. Best value per column in bold; "
        "† / ‡: differs from HTL / from the triplet loss (paired test, Holm-corrected "
        f"p < {significance.ALPHA}; see Paired tests).\n\n"
    )
    if speed.get("resolution"):
        header += (
            f"iters to 95%: the first evaluated iteration with R@1 at or above 95% of the "
            f"triplet loss's final R@1 (mean over its seeds) or of the run's own final R@1; "
            f"mean ± 95% half width over seeds. R@1 is evaluated every {speed['resolution']} "
            "iterations, the resolution of these numbers.\n\n"
        )
    if cfg.get("verification"):
        header += f"LFW verif.: {cfg['verification']}; fold std: its std over the folds.\n\n"
    return (
        header
        + markdown_table(table, cfg, titles, statistics)
        + significance.tests_markdown(statistics.get("tests", []), titles)
        + diagnostics_markdown(statistics.get("diagnostics", {}), titles)
        + hierarchy_markdown(table, titles)
        + tuning_markdown(cfg.get("tuning"), titles)
    )


#: The per-rebuild diagnostics shown in results.md: (key, title, format).
DIAGNOSTIC_COLUMNS = [
    ("d0", "d0", "{:.3f}"),
    ("alpha_near_p50", "alpha near (median)", "{:.2f}"),
    ("alpha_far_p50", "alpha far (median)", "{:.2f}"),
    ("active_fraction", "active triplets", "{:.0%}"),
    ("far_hinge_share", "far share of hinge", "{:.0%}"),
]


def diagnostics_summary(runs, losses) -> Dict[str, Dict[str, Any]]:
    """Per loss, the first and the last tree's diagnostics, mean over seeds."""
    out = {}
    for loss in losses:
        mine = [r["diagnostics"] for r in runs if r["loss"] == loss and r.get("diagnostics")]
        if not mine:
            continue
        row = {}
        for which, index in (("first", 0), ("last", -1)):
            flat = [_flatten(entries[index]) for entries in mine]
            row[which] = {
                key: float(np.mean([f[key] for f in flat if f.get(key) is not None]))
                for key, _, _ in DIAGNOSTIC_COLUMNS
                if any(f.get(key) is not None for f in flat)
            }
        row["seeds"] = len(mine)
        out[loss] = row
    return out


def _flatten(entry: Dict[str, Any]) -> Dict[str, Any]:
    flat = dict(entry)
    for side in ("near", "far"):
        summary = entry.get(f"alpha_{side}")
        flat[f"alpha_{side}_p50"] = None if summary is None else summary["p50"]
    return flat


def diagnostics_markdown(summary, titles: Mapping[str, str]) -> str:
    if not summary:
        return ""
    lines = [
        "\n## HTL's margins per tree\n",
        "For the first tree and the last, over the training batches until the next "
        "rebuild (mean over seeds): d0; the median margin alpha of near pairs (the "
        "negative's class among the anchor class's m - 1 nearest classes, its "
        "anchor-neighbour group) and of far pairs; the fraction of triplets with a "
        "positive hinge; the share of the summed hinge that far negatives give.\n",
        "| loss | tree | " + " | ".join(t for _, t, _ in DIAGNOSTIC_COLUMNS) + " | seeds |",
        "|" + "---|" * (len(DIAGNOSTIC_COLUMNS) + 3),
    ]
    for loss, row in summary.items():
        for which in ("first", "last"):
            cells = [
                fmt.format(row[which][key]) if key in row[which] else "–"
                for key, _, fmt in DIAGNOSTIC_COLUMNS
            ]
            lines.append(
                f"| {titles.get(loss, loss)} | {which} | "
                + " | ".join(cells)
                + f" | {row['seeds']} |"
            )
    return "\n".join(lines) + "\n"


def tuning_markdown(tuning, titles: Mapping[str, str]) -> str:
    """The search behind the hyper-parameters: budget, and per loss the best trial
    against the untuned default."""
    if not tuning:
        return ""
    budget = tuning["budget"]
    lines = [
        "\n## Tuning\n",
        f"{budget['trials']} optuna trials per loss (TPE; the first trial is the untuned "
        f"default). The training classes are cut into {budget['folds']} class-disjoint folds; "
        f"a trial trains {budget['tune_iters']} iterations on the other folds' classes and "
        "validates on each fold's in turn; objective: the mean validation MAP@R (R@1 beside "
        "it). The test classes are never seen. Every trial is in results.json "
        "(configuration.tuning).\n",
        "| loss | best trial | validation MAP@R | R@1 | untuned default's MAP@R "
        "| best configuration |",
        "|---|---|---|---|---|---|",
    ]
    for loss, study in tuning["studies"].items():
        best = next(t for t in study["trials"] if t["number"] == study["best_trial"])
        default = next((t for t in study["trials"] if t["untuned_default"]), None)
        default_value = (
            "–" if default is None or default["value"] is None else f"{100 * default['value']:.1f}"
        )
        params = ", ".join(
            f"{k} = {v:.3g}" if isinstance(v, float) else f"{k} = {v}"
            for k, v in study["best_params"].items()
        )
        lines.append(
            f"| {titles.get(loss, loss)} | {best['number'] + 1} | {100 * best['value']:.1f} "
            f"| {100 * best['recall_at_1']:.1f} | {default_value} | {params} |"
        )
    return "\n".join(lines) + "\n"


def hierarchy_markdown(table, titles: Mapping[str, str]) -> str:
    """The learned tree against the superclasses, for the losses that measured it."""
    rows = {loss: row for loss, row in table.items() if "dendrogram_purity" in row}
    if not rows:
        return ""
    lines = [
        "\n## The learned tree against the data set's superclasses\n",
        "The last class tree of each run (built from the model before the last epoch) "
        "against the superclasses of the training classes: dendrogram purity, and the "
        "adjusted Rand index of the tree cut into as many clusters as superclasses; "
        "beside each, the mean over random trees of the same classes (the floor). "
        "Mean ± std over seeds.\n",
        "| loss | " + " | ".join(t for _, t in HIERARCHY_COLUMNS) + " | seeds |",
        "|" + "---|" * (len(HIERARCHY_COLUMNS) + 2),
    ]
    for loss, row in rows.items():
        cells = []
        for key, _ in HIERARCHY_COLUMNS:
            if key not in row:
                cells.append("–")
                continue
            mean, std = row[key]
            cells.append(f"{mean:.3f}" + (f" ± {std:.3f}" if len(row["seeds"]) > 1 else ""))
        lines.append(f"| {titles[loss]} | " + " | ".join(cells) + f" | {len(row['seeds'])} |")
    return "\n".join(lines) + "\n"


def hierarchy_png(runs, cfg, titles: Mapping[str, str]) -> bytes:
    """Dendrogram purity and ARI against iteration (mean over seeds), the random-tree
    floor dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    measures = [("dendrogram_purity", "dendrogram purity"), ("adjusted_rand_index", "ARI")]
    for ax, (key, label) in zip(axes, measures):
        for loss in cfg["losses"]:
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
    fig.suptitle(f"Class tree against the superclasses of {cfg['dataset']}")
    fig.tight_layout()
    return _png_bytes(fig)


def diagnostics_png(runs, cfg, titles: Mapping[str, str]) -> bytes:
    """Per tree (mean over seeds): the median margin of near and far pairs, and the
    fraction of active triplets with the far negatives' share of the hinge."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for loss in cfg["losses"]:
        mine = [r["diagnostics"] for r in runs if r["loss"] == loss and r.get("diagnostics")]
        if not mine:
            continue
        length = min(len(entries) for entries in mine)
        its = [e["iteration"] for e in mine[0][:length]]

        def series(key):
            rows = [[_nan(_flatten(e).get(key)) for e in entries[:length]] for entries in mine]
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
    fig.suptitle(f"HTL's margins per tree on {cfg['dataset']} (mean over seeds)")
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


def write_reports(
    runs, cfg, environment, titles: Mapping[str, str], dashed: Collection[str] = ()
) -> str:
    """Write results.json, .csv, .md, convergence.png (and hierarchy.png when the runs
    measured their trees) to cfg["out"]; return the markdown."""
    out = cfg["out"]
    table = summarize(runs, cfg)
    statistics = {
        "intervals": significance.intervals(runs, cfg["losses"], metric_keys(cfg)),
        "tests": significance.pairwise_tests(runs, cfg["losses"]),
        "convergence": convergence.convergence(runs, cfg["losses"]),
        "diagnostics": diagnostics_summary(runs, cfg["losses"]),
    }
    results = {
        "configuration": cfg,
        "environment": environment,
        "summary": {
            k: {m: list(v) if isinstance(v, tuple) else v for m, v in row.items()}
            for k, row in table.items()
        },
        "statistics": statistics,
        "runs": runs,
    }
    atomic_write(os.path.join(out, "results.json"), json.dumps(results, indent=1))
    atomic_write(os.path.join(out, "results.csv"), csv_text(runs, cfg))
    markdown = results_markdown(table, cfg, titles, statistics)
    atomic_write(os.path.join(out, "results.md"), markdown)
    if runs:
        atomic_write(
            os.path.join(out, "convergence.png"), convergence_png(runs, cfg, titles, dashed)
        )
    if any(r.get("diagnostics") for r in runs):
        atomic_write(os.path.join(out, "margins.png"), diagnostics_png(runs, cfg, titles))
    if any(r.get("hierarchy") for r in runs):
        atomic_write(os.path.join(out, "hierarchy.png"), hierarchy_png(runs, cfg, titles))
    return markdown
