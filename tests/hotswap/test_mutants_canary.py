"""A canary step's figures, its judgement at the exact thresholds, its wait, and the split
it routes by (killing mutmut's survivors in `hotswap.canary`: `judge`, `_more_errors`,
`split_for`, `CanaryStep.judged`, `CanaryStep.record`).

The judgements run on `ArmStats` fed one `ArmOutcome` at a time, as `Swaps.record` feeds
them; the waits on a clock of the test's own (`canary`'s `monotonic` and `sleep`), so the
step's length is exact.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from types import SimpleNamespace

import pytest

from modelyard.hotswap import canary
from modelyard.hotswap.arm_stats import ArmStats
from modelyard.hotswap.canary import CanaryPolicy, CanaryStep, judge, split_for
from modelyard_client.v1 import hotswap_pb2

A, B = "up/a", "up/b"
POLICY = CanaryPolicy()  # 5 points of errors; p95 50 % and 20 ms slower
real_sleep = asyncio.sleep


def _arm(name: str, errors: int, latencies: Sequence[float]) -> ArmStats:
    """An arm's figures: `errors` failed calls, then one successful call per latency."""
    stats = ArmStats(name, A if name == "old" else B)
    for _ in range(errors):
        stats.add(hotswap_pb2.ArmOutcome(arm=name, failed=True))
    for latency in latencies:
        stats.add(hotswap_pb2.ArmOutcome(arm=name, latency_ms=latency))
    return stats


def _step(old: ArmStats, new: ArmStats, percent: float = 5) -> CanaryStep:
    return CanaryStep(percent, old, new)


def _errors(old: tuple[int, int], new: tuple[int, int]) -> CanaryStep:
    """A step whose arms differ in errors only: (errors, calls) each, every success 50 ms."""
    (old_errors, old_calls), (new_errors, new_calls) = old, new
    return _step(
        _arm("old", old_errors, [50.0] * (old_calls - old_errors)),
        _arm("new", new_errors, [50.0] * (new_calls - new_errors)),
    )


# ---- the split -------------------------------------------------------------------------


def test_the_split_gives_the_new_version_its_percent_and_draws_each_call_on_its_own() -> None:
    assert split_for("swap-1", A, B, 25) == hotswap_pb2.Split(
        id="swap-1",
        kind=hotswap_pb2.Split.KIND_CANARY,
        arms=[
            hotswap_pb2.ABArm(name="old", model_id=A, weight=0.75),
            hotswap_pb2.ABArm(name="new", model_id=B, weight=0.25),
        ],
        sticky_by=hotswap_pb2.STICKY_BY_REQUEST,
    )


# ---- the step's figures ----------------------------------------------------------------


def test_a_step_counts_the_old_and_the_new_versions_calls_and_no_other_arms() -> None:
    step = _step(ArmStats("old", A), ArmStats("new", B))
    for arm in ("", "a", "OLD"):
        step.record(hotswap_pb2.ArmOutcome(arm=arm, latency_ms=10))
    assert (step.old.requests, step.new.requests, step.changed.is_set()) == (0, 0, False)
    step.record(hotswap_pb2.ArmOutcome(arm="old", latency_ms=10))
    step.record(hotswap_pb2.ArmOutcome(arm="new", failed=True))
    step.record(hotswap_pb2.ArmOutcome(arm="new", latency_ms=30))
    assert (step.old.requests, step.new.requests, step.new.errors) == (1, 2, 1)
    assert step.changed.is_set()


def test_the_decision_carries_both_versions_calls_error_rates_and_p95s() -> None:
    # p95 by nearest rank: the 92nd of 96 latencies, the 47th of 49.
    old = _arm("old", 4, [float(ms) for ms in range(1, 97)])
    new = _arm("new", 1, [float(ms) for ms in range(1, 50)])
    decided = judge(_step(old, new), POLICY)
    assert decided.HasField("decided_at")
    assert abs(decided.decided_at.ToSeconds() - time.time()) < 60
    decided.ClearField("decided_at")
    assert decided == hotswap_pb2.CanaryStep(
        percent=5,
        decision="advance",
        reason=(
            "at 5 % the new version's 50 calls: error rate 2.0% (old 4.0%), "
            "p95 47.0 ms (old 92.0 ms)"
        ),
        old_requests=100,
        new_requests=50,
        old_error_rate=0.04,
        new_error_rate=0.02,
        old_latency_ms_p95=92.0,
        new_latency_ms_p95=47.0,
    )


# ---- errors ----------------------------------------------------------------------------


def test_an_error_rate_exactly_max_increase_above_is_not_a_regression() -> None:
    # 5 of 100 against 0 of 1,000: 5 points, not more; z would be 7.1.
    assert judge(_errors((0, 1000), (5, 100)), POLICY).decision == "advance"


def test_an_excess_within_max_increase_is_not_a_regression_however_many_calls_show_it() -> None:
    # 8 % against 4 % over 10,000 calls each: far beyond chance (z = 11.9), 4 points only.
    assert judge(_errors((400, 10_000), (800, 10_000)), POLICY).decision == "advance"


def test_an_excess_beyond_max_increase_regresses_only_beyond_chance_at_95_percent() -> None:
    # Against 32 of 200 (16 %): 12 of 50 (24 %) is z = 1.33, within chance; 13 of 50 (26 %)
    # is z = 1.6462, just beyond the one-sided 95 % quantile 1.6449.
    assert judge(_errors((32, 200), (12, 50)), POLICY).decision == "advance"
    decided = judge(_errors((32, 200), (13, 50)), POLICY)
    assert (decided.decision, decided.reason) == (
        "rollback",
        "the new version regressed at 5 %: error rate 26.0% against 16.0% "
        "(more than 5.0% above, beyond chance)",
    )


def test_without_calls_on_the_old_version_the_excess_alone_decides() -> None:
    assert judge(_errors((0, 0), (2, 50)), POLICY).decision == "advance"  # 4 points
    decided = judge(_errors((0, 0), (3, 50)), POLICY)  # 6 points
    assert (decided.decision, decided.reason) == (
        "rollback",
        "the new version regressed at 5 %: error rate 6.0% against 0.0% "
        "(more than 5.0% above, beyond chance)",
    )


# ---- latency ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old_p95", "new_p95", "decision"),
    [
        (100.0, 150.0, "advance"),  # 50 % and 50 ms slower: not more than 50 %
        (100.0, 150.5, "rollback"),  # 50.5 % and 50.5 ms
        (20.0, 40.0, "rollback"),  # 100 % and exactly 20 ms: at least 20 ms
        (20.0, 39.5, "advance"),  # 97.5 % but 19.5 ms
    ],
)
def test_a_p95_regresses_when_more_than_50_percent_and_at_least_20_ms_slower(
    old_p95: float, new_p95: float, decision: str
) -> None:
    step = _step(_arm("old", 0, [old_p95] * 20), _arm("new", 0, [new_p95] * 20))
    assert judge(step, POLICY).decision == decision


@pytest.mark.parametrize(
    ("old_latencies", "new_latencies", "decision"),
    [(20, 20, "rollback"), (19, 20, "advance"), (20, 19, "advance")],
)
def test_p95s_are_compared_once_each_version_has_20_successful_calls(
    old_latencies: int, new_latencies: int, decision: str
) -> None:
    step = _step(_arm("old", 0, [100.0] * old_latencies), _arm("new", 0, [200.0] * new_latencies))
    assert judge(step, POLICY).decision == decision


@pytest.mark.parametrize(("rollback_on_failure", "decision"), [(True, "rollback"), (False, "hold")])
def test_a_step_regressing_on_errors_and_latency_names_both(
    rollback_on_failure: bool, decision: str
) -> None:
    # 15 of 50 failed against none of 100; the 35 answers twice as slow.
    step = _step(_arm("old", 0, [50.0] * 100), _arm("new", 15, [100.0] * 35), percent=25)
    decided = judge(step, CanaryPolicy(rollback_on_failure=rollback_on_failure))
    assert (decided.decision, decided.reason) == (
        decision,
        "the new version regressed at 25 %: "
        "error rate 30.0% against 0.0% (more than 5.0% above, beyond chance); "
        "p95 latency 100.0 ms against 50.0 ms (more than 50% and 20 ms above)",
    )


# ---- the wait --------------------------------------------------------------------------


class Clock:
    """`canary`'s clock: `monotonic` reads `now`; `sleep` records its delay and moves `now`
    on by it."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.slept.append(delay)
        self.now += delay
        await real_sleep(0)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The canary's clock, at 1004 s."""
    clock = Clock(1004.0)
    monkeypatch.setattr(canary, "time", SimpleNamespace(monotonic=clock.monotonic))
    monkeypatch.setattr(canary, "asyncio", SimpleNamespace(sleep=clock.sleep))
    return clock


def _ready_step(started: float) -> CanaryStep:
    """A step begun at `started` whose new version has answered 50 calls."""
    return CanaryStep(5, _arm("old", 0, [50.0] * 500), _arm("new", 0, [50.0] * 50), started)


async def test_a_step_with_its_calls_waits_out_the_rest_of_step_s_then_is_judged(
    clock: Clock,
) -> None:
    step = _ready_step(started=1000.0)
    async with asyncio.timeout(5):
        decided = await step.judged(CanaryPolicy(step_requests=50, step_s=10.0))
    assert (decided.decision, decided.new_requests) == ("advance", 50)
    assert (clock.slept, clock.now) == ([6.0], 1010.0)


async def test_a_step_that_has_lasted_exactly_step_s_is_judged_at_once(clock: Clock) -> None:
    step = _ready_step(started=994.0)
    async with asyncio.timeout(5):
        decided = await step.judged(CanaryPolicy(step_requests=50, step_s=10.0))
    assert (decided.decision, clock.slept) == ("advance", [])


async def test_a_step_waits_for_step_requests_calls_on_the_new_version(clock: Clock) -> None:
    step = CanaryStep(5, _arm("old", 0, [50.0] * 500), _arm("new", 0, [50.0] * 49), 0.0)
    judged = asyncio.create_task(step.judged(CanaryPolicy(step_requests=50, step_s=10.0)))
    await real_sleep(0.01)
    step.record(hotswap_pb2.ArmOutcome(arm="old", latency_ms=50))  # the old version's: not yet
    await real_sleep(0.01)
    assert not judged.done()
    step.record(hotswap_pb2.ArmOutcome(arm="new", latency_ms=50))
    async with asyncio.timeout(5):
        decided = await judged
    assert (decided.new_requests, decided.old_requests, clock.slept) == (50, 501, [])
