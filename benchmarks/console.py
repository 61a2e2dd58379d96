"""What the benchmark prints: progress bars on a terminal, one line per epoch and
per run elsewhere, the final table always. Only rank 0 prints."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from typing import Any, Dict, Iterator, Optional

import tqdm


def tqdm_disabled_by_environment() -> bool:
    """tqdm's own switch: TQDM_DISABLE set to anything but the empty string."""
    return bool(os.environ.get("TQDM_DISABLE"))


def _is_terminal(stream) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)())


class Console:
    """What compare.py prints. Only rank 0 prints.

    Progress bars only when stdout and stderr are both a terminal, and neither
    --quiet nor TQDM_DISABLE is given; without bars, one line per finished epoch
    and per finished run. --quiet prints the final table alone.
    """

    def __init__(self, quiet: bool = False, rank: int = 0):
        self.prints_table = rank == 0
        self.talks = rank == 0 and not quiet
        self.bars = (
            self.talks
            and not tqdm_disabled_by_environment()
            and _is_terminal(sys.stdout)
            and _is_terminal(sys.stderr)
        )

    def say(self, line: str) -> None:
        if not self.talks:
            return
        if self.bars:
            tqdm.tqdm.write(line)  # above the bars, not into them
        else:
            print(line, flush=True)

    def table(self, text: str) -> None:
        if self.prints_table:
            print(text, flush=True)

    def epoch_done(
        self,
        name: str,
        epoch: int,
        epochs: int,
        seconds: float,
        metrics: Optional[Dict[str, float]],
    ) -> None:
        if self.bars:
            return  # the epoch bar shows it
        line = f"{name}: epoch {epoch}/{epochs}, {seconds:.1f} s"
        if metrics is not None:
            line += f", R@1 {100 * metrics['recall_at_1']:.1f}"
        self.say(line)

    def bar(self, **kwargs: Any) -> tqdm.tqdm:
        return tqdm.tqdm(leave=False, disable=not self.bars, **kwargs)

    @contextlib.contextmanager
    def others_bars_off(self) -> Iterator[None]:
        """Without our bars, no bars from code that passes no disable= either (PML's
        trainer and tester). tqdm reads TQDM_DISABLE only once, when it is imported,
        so its default is changed here, for the block only."""
        if self.bars:
            yield
            return
        init = vars(tqdm.tqdm)["__init__"]
        tqdm.tqdm.__init__ = functools.partialmethod(init, disable=True)
        try:
            yield
        finally:
            tqdm.tqdm.__init__ = init
