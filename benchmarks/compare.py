"""HTL beside the contrastive, triplet, margin and multi-similarity losses, at the same budget.

Everything but the loss (and the batch sampler HTL's method prescribes) is
held fixed: trunk, embedder, embedding size, optimizer, learning rate, batch
size, iterations, data and seeds. Accuracy comes from PML's AccuracyCalculator
with Recall@K added, on the test split of unseen classes.

From the repository root:

    python -m benchmarks.compare                 # embedded glyph data, about 15 min on 2 CPU cores
    python -m benchmarks.compare --quick         # about 2 min
    python -m benchmarks.compare --seeds 0 1 2 --ablations
    python -m benchmarks.compare --quick > log 2>&1   # one line per epoch and per run

Re-running with the same --out skips the (loss, seed) runs already finished.
Progress bars only on a terminal; --quiet (or TQDM_DISABLE=1) turns them off.
"""

from __future__ import annotations

import sys

if not __package__:  # run as a file: benchmarks/ is then no package to import from
    sys.stderr.write(
        "error: run the benchmark as a module from the repository root: "
        "python -m benchmarks.compare ...\n"
    )
    raise SystemExit(2)

import logging  # noqa: E402
from typing import Any, Dict, List, Optional  # noqa: E402

import torch  # noqa: E402

from benchmarks import cli, runner  # noqa: E402
from benchmarks.console import Console  # noqa: E402


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    """Parse the flags, build the RunConfig, check it, run every (loss, seed) run;
    returns the configuration as recorded and the runs."""
    args = cli.build_parser(__doc__).parse_args(argv)
    cfg = cli.resolve_config(args)
    cli.check_trunk(args, cfg)
    cli.check_losses_build(cfg, args.hp)
    logging.getLogger("PML").setLevel(logging.WARNING)
    rank, world_size, cfg = runner.init_distributed(cfg)
    console = Console(quiet=args.quiet, rank=rank)
    with console.others_bars_off():
        cfg, runs = runner.run_all(cfg, console, rank, world_size)
    if world_size > 1:
        torch.distributed.destroy_process_group()
    return {"config": cfg, "runs": runs}


if __name__ == "__main__":
    try:
        main()
    except cli.UsageError as error:
        sys.stderr.write(f"{error}\n")
        raise SystemExit(error.code)
