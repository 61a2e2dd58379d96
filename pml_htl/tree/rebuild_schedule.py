"""When a drop-in loss builds its next tree (docs/method.md, "When the tree is built")."""

from __future__ import annotations

import math
import numbers
import time
from typing import Callable, Dict, Optional, Union

import torch

from .._validation import check_finite_number, check_positive_int
from .distributed import agreed_max

#: ``tree_update_interval="auto"``: the schedule that keeps builds within a time budget.
AUTO = "auto"


def check_tree_update_interval(value) -> Optional[Union[int, str, "RebuildSchedule"]]:
    """``"auto"``, a positive int, a `RebuildSchedule`, or None (drop-in mode off)."""
    expected = f"{AUTO!r}, a positive int, a RebuildSchedule or None"
    if value is None or isinstance(value, RebuildSchedule):
        return value
    if isinstance(value, str):
        if value != AUTO:
            raise ValueError(f"tree_update_interval must be {expected}, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"tree_update_interval must be {expected}, got {type(value).__name__}")
    return check_positive_int(value, "tree_update_interval")


def schedule_for(interval: Union[int, str, "RebuildSchedule"]) -> "RebuildSchedule":
    """A schedule of its own for a checked ``tree_update_interval`` (never
    None): a given schedule's settings are copied, so losses never share one."""
    if isinstance(interval, RebuildSchedule):
        return interval.fresh()
    return RebuildSchedule(interval)


class RebuildSchedule:
    """The iterations at which drop-in mode builds its tree.

    Args:
        interval: a positive int: every ``interval`` iterations. ``"auto"``: a
            first tree after ``first`` iterations, then each tree once its
            predicted build time is at most ``budget`` of the training wall time
            since the last build.
        first: iterations before the first tree under ``"auto"``; also the
            wait before another try when a build finds too few classes.
        budget: the largest fraction of training time spent building under ``"auto"``.
        clock: seconds, monotonic (``time.perf_counter``; tests pass a fake one).

    Under ``"auto"`` the decisions are taken in iterations, so that every rank
    of torch.distributed builds on the same iteration: after a build of C_b
    classes that took R seconds, following iterations of s seconds each (the
    wall time from the end of the previous build to the start of this one,
    per training iteration: model, loss, optimizer, data, everything), the
    schedule keeps gap = R / (budget s), the iterations whose time pays for
    one such build. This is the one number the ranks agree on (one all-reduce,
    the largest gap, per build). A tree of C classes is predicted to take
    R (C / C_b)^2 (its class distances), so the next build comes once
    gap (C / C_b)^2 iterations have passed since the last, C being the
    classes gathered by then (checked at the iteration this predicts, after
    the statistics are combined, so the same on every rank; postponed while
    more classes keep arriving).

    On CUDA the loss's step does not wait for the device, but the host can
    run only a bounded queue of kernels ahead of it, so over the iterations of
    a gap these host timings track device time; the build itself waits for
    the device.
    """

    def __init__(
        self,
        interval: Union[int, str] = AUTO,
        first: int = 10,
        budget: float = 0.03,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.interval = check_tree_update_interval(interval)
        if self.interval is None or isinstance(self.interval, RebuildSchedule):
            raise ValueError(f"interval must be {AUTO!r} or a positive int, got {interval!r}")
        self.first = check_positive_int(first, "first")
        budget = check_finite_number(budget, "budget")
        if not 0 < budget <= 1:
            raise ValueError(f"budget must be a fraction in (0, 1], got {budget:g}")
        self.budget, self.clock = budget, clock
        self.next_iteration = first if self.adaptive else self.interval
        self.last_build = 0  # iteration of the last tree
        self.built_classes = 0  # C_b; 0 before the first tree
        self.gap = 0.0  # R / (budget s) of the last tree, agreed across ranks
        self._window: Optional[tuple] = None  # (clock, iteration) since the last build
        self._build_started: Optional[float] = None

    def fresh(self) -> "RebuildSchedule":
        """A schedule with these settings, at its start."""
        return RebuildSchedule(self.interval, self.first, self.budget, self.clock)

    @property
    def adaptive(self) -> bool:
        return self.interval == AUTO

    def due(self, iteration: int) -> bool:
        """Called once per training iteration: is a build (or, under "auto", the
        check whether one is affordable) due now?"""
        if self._window is None:  # the first iteration, also after a checkpoint
            self._window = (self.clock(), iteration)
        if not self.adaptive:
            return iteration % self.interval == 0
        return iteration >= self.next_iteration

    def affordable(self, iteration: int, num_classes: int) -> bool:
        """Under "auto": build a tree of ``num_classes`` now? If not, the check
        moves to the iteration where it would be."""
        if not self.adaptive or self.built_classes == 0:
            return True
        needed = self.gap * (num_classes / self.built_classes) ** 2
        if iteration - self.last_build >= needed:
            return True
        self.next_iteration = self.last_build + math.ceil(needed)
        return False

    def build_started(self) -> None:
        self._build_started = self.clock()

    def build_failed(self, iteration: int) -> None:
        """Too few classes or samples: try again later, gathering on."""
        self._build_started = None
        self.next_iteration = iteration + self.first

    def build_finished(self, iteration: int, num_classes: int) -> None:
        """Record the build that `build_started` began; plan the next."""
        now = self.clock()
        self.last_build = iteration
        if not self.adaptive:
            self.next_iteration = iteration + self.interval - iteration % self.interval
        else:
            started, (window_start, window_iteration) = self._build_started, self._window
            steps = iteration - window_iteration
            gap = 0.0  # no iteration timed yet (first=1, a checkpoint): time the next
            if steps > 0:
                per_iteration = max((started - window_start) / steps, 1e-9)
                gap = (now - started) / (self.budget * per_iteration)
            self.gap = agreed_max(gap)  # a collective: every rank is here on this iteration
            self.built_classes = num_classes
            self.next_iteration = iteration + max(math.ceil(self.gap), 1)
        self._window, self._build_started = (now, iteration), None

    def state_dict(self) -> Dict[str, torch.Tensor]:
        return {
            "next_iteration": torch.tensor(self.next_iteration),
            "last_build": torch.tensor(self.last_build),
            "built_classes": torch.tensor(self.built_classes),
            "gap": torch.tensor(self.gap, dtype=torch.float64),
        }

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        """Continue a saved schedule; timing restarts at the next iteration."""
        values = dict(
            next_iteration=int(state["next_iteration"]),
            last_build=int(state["last_build"]),
            built_classes=int(state["built_classes"]),
            gap=float(state["gap"]),
        )
        for name, value in values.items():
            setattr(self, name, value)
        self._window, self._build_started = None, None
