"""RebuildSchedule: when drop-in mode builds its tree, driven by a fake clock
(no real timing). The expected iterations are worked out by hand from
docs/method.md, "When the tree is built": after a build of C_b classes taking
R seconds, at s seconds per iteration, gap = R / (budget s); a tree of C
classes waits until gap (C / C_b)^2 iterations have passed since the last."""

import numpy as np
import pytest

from pml_htl.tree import RebuildSchedule
from pml_htl.tree.rebuild_schedule import check_tree_update_interval


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def drive(schedule, clock, iterations, step_seconds, classes_at, build_seconds, start=1):
    """A training loop: each iteration takes ``step_seconds``; when a check is due
    the statistics hold ``classes_at(iteration)`` classes, and a build of C
    classes takes ``build_seconds(C)``. Returns (checks, builds)."""
    checks, builds = [], []
    for iteration in range(start, iterations + 1):
        clock.now += step_seconds
        if not schedule.due(iteration):
            continue
        checks.append(iteration)
        C = classes_at(iteration)
        if schedule.affordable(iteration, C):
            schedule.build_started()
            clock.now += build_seconds(C)
            schedule.build_finished(iteration, C)
            builds.append(iteration)
    return checks, builds


def test_fixed_interval_ignores_time():
    clock = FakeClock()
    schedule = RebuildSchedule(3, clock=clock)
    checks, builds = drive(schedule, clock, 10, 0.5, lambda i: 4 + i, lambda C: 100.0)
    assert checks == builds == [3, 6, 9]


def test_auto_first_build_then_the_budget_then_postponed_for_new_classes():
    # powers of two, so every time below is exact in binary
    clock = FakeClock()
    schedule = RebuildSchedule("auto", first=10, budget=1 / 16, clock=clock)
    # 4 classes up to iteration 20, 8 from then on; a build of 4 classes takes
    # 1/8 s, one of 8 classes 1/4 s (less than the predicted 4 x 1/8 s)
    checks, builds = drive(
        schedule,
        clock,
        70,
        step_seconds=0.5,
        classes_at=lambda i: 4 if i <= 20 else 8,
        build_seconds=lambda C: {4: 0.125, 8: 0.25}[C],
    )
    # 10: first. gap = 0.125 / (0.5 / 16) = 4: 14, 18, then 22 would be due,
    # but 8 classes are predicted to need 4 (8/4)^2 = 16 iterations: 18 + 16 = 34.
    # There the build takes 0.25 s: gap = 0.25 / (0.5 / 16) = 8: 42, 50, ...
    assert builds == [10, 14, 18, 34, 42, 50, 58, 66]
    assert checks == [10, 14, 18, 22, 34, 42, 50, 58, 66]


def test_auto_gap_follows_the_measured_step_time():
    clock = FakeClock()
    schedule = RebuildSchedule("auto", first=4, budget=0.25, clock=clock)
    # iterations of 2 s up to 4, then of 1 s; every build takes 1 s
    builds = []
    for iteration in range(1, 30):
        clock.now += 2.0 if iteration <= 4 else 1.0
        if schedule.due(iteration) and schedule.affordable(iteration, 5):
            schedule.build_started()
            clock.now += 1.0
            schedule.build_finished(iteration, 5)
            builds.append(iteration)
    # at 4: timed from the first call (iteration 1): 3 iterations in 6 s, so
    # gap = 1 / (0.25 x 2) = 2: 6. Then 1 s iterations: gap = 4: 10, 14, ...
    assert builds == [4, 6, 10, 14, 18, 22, 26]


@pytest.mark.parametrize("seed", range(5))
def test_auto_keeps_each_build_within_the_budget_when_its_cost_is_predicted(seed):
    """A build of C classes taking k C^2 seconds (the predicted growth) costs at
    most ``budget`` of the training time since the previous build."""
    rng = np.random.default_rng(seed)
    budget, step = rng.uniform(0.01, 0.2), rng.uniform(0.001, 0.1)
    growth = 10 + rng.integers(0, 3, 2000).cumsum()  # new classes keep arriving
    k = rng.uniform(0.1, 1) * 50 * budget * step / growth[-1] ** 2  # gaps up to 50
    clock = FakeClock()
    schedule = RebuildSchedule("auto", first=int(rng.integers(2, 30)), budget=budget, clock=clock)
    _, builds = drive(schedule, clock, 2000, step, lambda i: int(growth[i - 1]), lambda C: k * C**2)
    assert len(builds) >= 2
    for previous, this in zip(builds, builds[1:]):
        cost = k * int(growth[this - 1]) ** 2
        assert cost <= budget * step * (this - previous) * (1 + 1e-9)


def test_failed_build_tries_again_after_first_iterations():
    clock = FakeClock()
    schedule = RebuildSchedule("auto", first=10, clock=clock)
    due = [i for i in range(1, 25) if schedule.due(i)]
    assert due == list(range(10, 25))  # due until something is decided
    schedule = RebuildSchedule("auto", first=10, clock=clock)
    for i in range(1, 11):
        schedule.due(i)
    schedule.build_started()
    schedule.build_failed(10)
    assert [i for i in range(11, 31) if schedule.due(i)] == list(range(20, 31))


def test_first_build_at_iteration_one_times_the_next_iteration():
    clock = FakeClock()
    schedule = RebuildSchedule("auto", first=1, budget=0.5, clock=clock)
    _, builds = drive(schedule, clock, 12, 1.0, lambda i: 3, lambda C: 2.0)
    # 1: nothing timed yet, so 2 is timed: gap = 2 / (0.5 x 1) = 4: 6, 10
    assert builds == [1, 2, 6, 10]


def test_state_round_trip_continues_the_same_schedule():
    def run(resume_at):
        clock = FakeClock()
        schedule = RebuildSchedule("auto", first=5, budget=0.125, clock=clock)
        kw = dict(classes_at=lambda i: 4 if i < 12 else 6, build_seconds=lambda C: C / 8)
        _, builds = drive(schedule, clock, resume_at, 0.5, **kw)
        resumed = RebuildSchedule("auto", first=5, budget=0.125, clock=clock)
        resumed.load_state_dict(schedule.state_dict())
        _, more = drive(resumed, clock, 80, 0.5, start=resume_at + 1, **kw)
        return builds + more

    # 5, gap 0.5 / (0.125 x 0.5) = 8, but at 13 there are 6 classes: 8 (6/4)^2
    # = 18: 23; gap 0.75 / (0.125 x 0.5) = 12: 35, 47, 59, 71
    assert run(80) == [5, 23, 35, 47, 59, 71]
    # the timing restarts after loading, so a resumed run builds alike
    assert run(7) == run(25) == run(80)


@pytest.mark.parametrize(
    "value, error, match",
    [
        ("fast", ValueError, "tree_update_interval must be 'auto'"),
        (0, ValueError, "tree_update_interval must be >= 1"),
        (-5, ValueError, "tree_update_interval must be >= 1"),
        (2.5, TypeError, "tree_update_interval must be 'auto'.*float"),
        (True, TypeError, "tree_update_interval must be 'auto'.*bool"),
    ],
)
def test_bad_interval_is_refused(value, error, match):
    with pytest.raises(error, match=match):
        check_tree_update_interval(value)
    with pytest.raises(error, match=match):
        RebuildSchedule(value)


def test_good_intervals():
    assert check_tree_update_interval(np.int64(7)) == 7
    assert type(check_tree_update_interval(np.int64(7))) is int
    assert check_tree_update_interval("auto") == "auto"
    assert check_tree_update_interval(None) is None
    with pytest.raises(ValueError, match="None"):
        RebuildSchedule(None)
    settings = RebuildSchedule("auto", first=4, budget=0.5)
    assert check_tree_update_interval(settings) is settings  # the loss copies it
    with pytest.raises(ValueError, match="interval must be 'auto' or a positive int"):
        RebuildSchedule(settings)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(first=0), ValueError, "first"),
        (dict(first=2.0), TypeError, "first"),
        (dict(budget=0.0), ValueError, "budget"),
        (dict(budget=1.5), ValueError, "budget"),
        (dict(budget=float("nan")), ValueError, "budget"),
    ],
)
def test_bad_first_or_budget_is_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        RebuildSchedule("auto", **kwargs)
