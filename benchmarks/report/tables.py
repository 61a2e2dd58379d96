"""The comparison's numbers as text: the summary over seeds, results.md's tables
(accuracy, paired tests, HTL's margins, the tree against superclasses, tuning) and
results.csv."""

from __future__ import annotations

import csv
import io
import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from benchmarks.config import RunConfig
from benchmarks.report.validation_table import at_validation_best, validation_markdown
from benchmarks.stats import convergence, significance
from benchmarks.stats.sampler_tests import sampler_tests_markdown

#: Per loss: its seeds, and (mean, std) over them of each metric and timing.
Summary = Dict[str, Dict[str, Any]]

METRIC_COLUMNS = [
    ("precision_at_1", "P@1"),
    ("mean_average_precision_at_r", "MAP@R"),
    ("r_precision", "R-Prec"),
    ("NMI", "NMI"),
    ("AMI", "AMI"),
]
#: Where the data have verification pairs (RunConfig.verification): the k-fold
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


def metric_columns(cfg: RunConfig) -> List[Tuple[str, str]]:
    return METRIC_COLUMNS + (VERIFICATION_COLUMNS if cfg.verification else [])


def metric_keys(cfg: RunConfig) -> List[str]:
    return [f"recall_at_{k}" for k in cfg.recall_ks] + [k for k, _ in metric_columns(cfg)]


def summarize(runs: List[Dict[str, Any]], cfg: RunConfig) -> Summary:
    """Per loss: the seeds, and (mean, std) over them of every metric and timing."""
    table: Dict[str, Dict[str, Any]] = {}
    for loss in cfg.losses:
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
        selected = at_validation_best(mine, metric_keys(cfg))
        if selected:
            row["at_validation_best"] = selected
        table[loss] = row
    return table


#: Fewer seeds than this, or --quick: a smoke run, whose report names no winner.
FINDING_SEEDS = 3


def is_smoke_run(cfg: RunConfig) -> bool:
    """A run too small to support a finding: --quick, or fewer than 3 seeds."""
    return bool(cfg.quick) or len(cfg.seeds) < FINDING_SEEDS


def describe_run(cfg: RunConfig, mark_smoke: bool = True) -> str:
    """What was run, in one line (for titles)."""
    seeds = ", ".join(str(s) for s in cfg.seeds)
    trunk = f"frozen {cfg.backbone}" if cfg.freeze_trunk else cfg.backbone
    text = (
        f"{cfg.dataset}, {trunk}, {cfg.epochs * cfg.iters_per_epoch} iterations, "
        f"seed{'s' if len(cfg.seeds) > 1 else ''} {seeds}"
    )
    if cfg.warm_start:
        text += f", triplet warm start {cfg.warm_start}"
    if cfg.tune:
        text += f", tuned ({cfg.tune['trials']} trials per loss)"
    if cfg.augment and cfg.augment != "none":
        text += f", {cfg.augment} augmentation"
        if cfg.freeze_trunk and cfg.feature_views:
            text += f" ({cfg.feature_views} cached views)"
    return text + (" (smoke run)" if mark_smoke and is_smoke_run(cfg) else "")


def describe_regime(cfg: RunConfig) -> str:
    """The regime's settings other than the defaults, in sentences (each ends with a space)."""
    if cfg.sampler == "default":
        text = "Rows that name no sampler draw MPerClassSampler batches. "
    else:
        text = f"Batches of every loss: --sampler {cfg.sampler}. "
    if cfg.freeze_trunk:
        views = f"{cfg.feature_views} augmented views" if cfg.feature_views else "clean views"
        embedder = "an MLP" if cfg.embedder == "mlp" else "a linear"
        text += (
            f"Frozen {cfg.backbone} trunk: its cached features ({views}) train {embedder} "
            "embedder. "
        )
    if cfg.warm_start:
        text += (
            f"Warm start: every loss starts with {cfg.warm_start} iterations of the triplet "
            "loss on MPerClassSampler batches. "
        )
    return text


def markdown_table(
    table: Summary,
    cfg: RunConfig,
    titles: Mapping[str, str],
    statistics: Optional[Dict[str, Any]] = None,
    rank: bool = True,
) -> str:
    """The accuracy table; ``rank``: the best value per column in bold and the
    significance marks (not for a smoke run)."""
    cols = [(f"recall_at_{k}", f"R@{k}") for k in cfg.recall_ks] + [
        c for c in metric_columns(cfg) if any(c[0] in row for row in table.values())
    ]
    best = {}
    for key, _ in cols if rank else []:
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
            cells.append(text + (significance.marks(tests, loss, key) if rank else ""))
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


def csv_text(runs: List[Dict[str, Any]], cfg: RunConfig) -> str:
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


def results_markdown(
    table: Summary,
    cfg: RunConfig,
    titles: Mapping[str, str],
    statistics: Optional[Dict[str, Any]] = None,
) -> str:
    """results.md: a short header, the table, the paired tests, HTL's diagnostics,
    the tree against the superclasses, and the tuning."""
    statistics = statistics or {}
    speed = statistics.get("convergence", {})
    tuned = " with tuned hyper-parameters" if cfg.tuning else ""
    smoke = is_smoke_run(cfg)
    if smoke:
        why = (["--quick"] if cfg.quick else []) + (
            [f"{len(cfg.seeds)} seed{'s' if len(cfg.seeds) > 1 else ''}"]
            if len(cfg.seeds) < FINDING_SEEDS
            else []
        )
        header = (
            f"# Smoke run, not a finding: {describe_run(cfg, mark_smoke=False)}\n\n"
            f"A check that the comparison runs ({', '.join(why)}): too short or too few "
            "seeds to rank the losses, so no value is marked best and no difference "
            "significant; the paired tests are in results.json. Run at least "
            f"{FINDING_SEEDS} seeds at the full budget for a finding.\n\n"
            f"Final accuracy after {cfg.epochs * cfg.iters_per_epoch} iterations{tuned} "
            "(%, mean ± half width of the 95% t interval over the n seeds, where n > 1). "
        )
    else:
        header = (
            f"# {cfg.dataset}: final accuracy after {cfg.epochs * cfg.iters_per_epoch} "
            f"iterations{tuned} (%, mean ± half width of the 95% t interval over the n "
            f"seeds)\n\n{describe_run(cfg)}. "
        )
    header += (
        f"Training augmentation: {cfg.augment}. {describe_regime(cfg)}"
        "s / iter: training wall time per iteration, tree rebuilds included, evaluation "
        "excluded; tree s: time spent building class trees."
    )
    if not smoke:
        header += (
            " Best value per column in bold; † / ‡: differs from HTL / from the triplet "
            f"loss (paired test, Holm-corrected p < {significance.ALPHA}; see Paired tests)."
        )
    header += "\n\n"
    if speed.get("resolution"):
        header += (
            f"iters to 95%: the first evaluated iteration with R@1 at or above 95% of the "
            f"triplet loss's final R@1 (mean over its seeds) or of the run's own final R@1; "
            f"mean ± 95% half width over seeds. R@1 is evaluated every {speed['resolution']} "
            "iterations, the resolution of these numbers.\n\n"
        )
    if cfg.verification:
        header += f"LFW verif.: {cfg.verification}; fold std: its std over the folds.\n\n"
    return (
        header
        + markdown_table(table, cfg, titles, statistics, rank=not smoke)
        + ("" if smoke else significance.tests_markdown(statistics.get("tests", []), titles))
        + ("" if smoke else sampler_tests_markdown(statistics.get("sampler_tests", []), titles))
        + validation_markdown(table, cfg, titles, statistics)
        + diagnostics_markdown(statistics.get("diagnostics", {}), titles)
        + hierarchy_markdown(table, titles)
        + tuning_markdown(cfg.tuning, titles)
    )


#: The per-rebuild diagnostics shown in results.md: (key, title, format).
DIAGNOSTIC_COLUMNS = [
    ("d0", "d0", "{:.3f}"),
    ("alpha_near_p50", "alpha near (median)", "{:.2f}"),
    ("alpha_far_p50", "alpha far (median)", "{:.2f}"),
    ("active_fraction", "active triplets", "{:.0%}"),
    ("far_hinge_share", "far share of hinge", "{:.0%}"),
    ("argument_slope", "hinge arg. against d - s: slope", "{:+.2f}"),
    ("predicted_slope", "predicted", "{:+.2f}"),
    ("positive_pairs", "class pairs active on average", "{:.0%}"),
]


def diagnostics_summary(
    runs: List[Dict[str, Any]], losses: Sequence[str]
) -> Dict[str, Dict[str, Any]]:
    """Per loss, the first and the last tree's diagnostics, mean over seeds."""
    out = {}
    for loss in losses:
        mine = [r["diagnostics"] for r in runs if r["loss"] == loss and r.get("diagnostics")]
        if not mine:
            continue
        row = {}
        for which, index in (("first", 0), ("last", -1)):
            flat = [flatten_diagnostics(entries[index]) for entries in mine]
            row[which] = {
                key: float(np.mean([f[key] for f in flat if f.get(key) is not None]))
                for key, _, _ in DIAGNOSTIC_COLUMNS
                if any(f.get(key) is not None for f in flat)
            }
        row["seeds"] = len(mine)
        out[loss] = row
    return out


def flatten_diagnostics(entry: Dict[str, Any]) -> Dict[str, Any]:
    flat = dict(entry)
    for side in ("near", "far"):
        summary = entry.get(f"alpha_{side}")
        flat[f"alpha_{side}_p50"] = None if summary is None else summary["p50"]
    argument = entry.get("hinge_argument") or {}
    flat["argument_slope"] = argument.get("slope")
    flat["predicted_slope"] = argument.get("predicted_slope")
    flat["positive_pairs"] = argument.get("positive_pairs")
    return flat


def diagnostics_markdown(summary: Dict[str, Dict[str, Any]], titles: Mapping[str, str]) -> str:
    if not summary:
        return ""
    lines = [
        "\n## HTL's margins per tree\n",
        "For the first tree and the last, over the training batches until the next "
        "rebuild (mean over seeds): d0; the median margin alpha of near pairs (the "
        "negative's class among the anchor class's m - 1 nearest classes, its "
        "anchor-neighbour group) and of far pairs; the fraction of triplets with a "
        "positive hinge; the share of the summed hinge that far negatives give; the "
        "slope of each (anchor class, negative class) pair's mean hinge argument "
        "against its separation d - s_a in the tree, beside the slope -(1 - lambda) "
        "the moving-target analysis predicts (docs/method.md), and the fraction of "
        "class pairs whose mean argument is positive.\n",
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


def tuning_markdown(tuning: Optional[Dict[str, Any]], titles: Mapping[str, str]) -> str:
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


def hierarchy_markdown(table: Summary, titles: Mapping[str, str]) -> str:
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
