"""Reports of a comparison: results.json, results.csv, results.md and the plots,
written to the run's --out after every finished run."""

from __future__ import annotations

import json
import os
from typing import Any, Collection, Dict, List, Mapping

from benchmarks.atomic_files import atomic_write
from benchmarks.config import RunConfig
from benchmarks.report.plots import convergence_png, diagnostics_png, hierarchy_png
from benchmarks.report.tables import (
    csv_text,
    describe_run,
    diagnostics_summary,
    metric_keys,
    results_markdown,
    summarize,
)
from benchmarks.report.tree_picture import tree_png
from benchmarks.report.validation_table import selected_test_scores
from benchmarks.stats import convergence, significance
from benchmarks.stats.sampler_tests import sampler_tests
from benchmarks.variants import AN_ROWS


def write_reports(
    runs: List[Dict[str, Any]],
    cfg: RunConfig,
    environment: Dict[str, Any],
    titles: Mapping[str, str],
    dashed: Collection[str] = (),
) -> str:
    """Write results.json, .csv, .md, convergence.png (and hierarchy.png when the runs
    measured their trees) to cfg.out; return the markdown."""
    out = cfg.out
    table = summarize(runs, cfg)
    statistics = {
        "intervals": significance.intervals(runs, cfg.losses, metric_keys(cfg)),
        "tests": significance.pairwise_tests(runs, cfg.losses),
        "convergence": convergence.convergence(runs, cfg.losses),
        "diagnostics": diagnostics_summary(runs, cfg.losses),
    }
    an_tests = [] if cfg.sampler != "default" else sampler_tests(runs, cfg.losses, AN_ROWS)
    if an_tests:  # under --sampler an X_an row draws its batches as X does: no test
        statistics["sampler_tests"] = an_tests
    if any(r.get("selected_checkpoint") for r in runs):
        statistics["intervals_at_validation_best"] = significance.intervals(
            runs, cfg.losses, metric_keys(cfg), selected_test_scores
        )
    results = {
        "configuration": cfg.record(),
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
    write_tree_pictures(runs, cfg, titles)
    return markdown


def write_tree_pictures(runs: List[Dict[str, Any]], cfg: RunConfig, titles: Mapping[str, str]):
    """trees/<loss>__seed<seed>.png: the last tree of every run that built trees (drawn
    once); tree.png: that of the first HTL run (the main loss where it ran)."""
    with_tree = [r for r in runs if r.get("tree")]
    for r in with_tree:
        path = os.path.join(cfg.out, "trees", f"{r['loss']}__seed{r['seed']}.png")
        if not os.path.exists(path):
            atomic_write(path, tree_png(r["tree"], _tree_title(r, cfg, titles)))
    htl = [r for r in with_tree if r["loss"].startswith("htl")]
    if htl:
        first = min(htl, key=lambda r: (r["loss"] != "htl", cfg.losses.index(r["loss"]), r["seed"]))
        atomic_write(
            os.path.join(cfg.out, "tree.png"),
            tree_png(first["tree"], _tree_title(first, cfg, titles)),
        )


def _tree_title(run: Dict[str, Any], cfg: RunConfig, titles: Mapping[str, str]) -> str:
    return (
        f"The last class tree of {titles.get(run['loss'], run['loss'])}, seed {run['seed']}\n"
        f"{describe_run(cfg)}"
    )
