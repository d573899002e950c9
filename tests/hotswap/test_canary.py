"""Canary swaps: traffic moves step by step, and a regression on live calls rolls back.

`Swaps` over a real route table in SQLite; the calls' outcomes are fed as
the gateways report them (`Swaps.record`), so each step's figures are exact.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path

import pytest
from hotswap.swap_fakes import InstantAnswers, SmallCatalog

from modelyard.hotswap.arm_stats import ArmStats
from modelyard.hotswap.canary import CanaryPolicy, CanaryStep, judge
from modelyard.hotswap.routes import RouteTable
from modelyard.hotswap.store import HotSwapStore
from modelyard.hotswap.swaps import Swaps, SwapSettings
from modelyard_client.errors import FailedPrecondition
from modelyard_client.v1 import hotswap_pb2

Status = hotswap_pb2.SwapStatus
A, B = "up/a", "up/b"
POLICY = CanaryPolicy(steps=(5, 25, 50, 100), step_requests=40, step_s=0.0)


def _open(path: Path, policy: CanaryPolicy = POLICY) -> tuple[RouteTable, Swaps]:
    routes = RouteTable(HotSwapStore(path))
    routes.seed({"chat": A}, {})
    settings = SwapSettings(grace_period_s=0.0, canary=policy)
    return routes, Swaps(routes, routes.store, SmallCatalog(A, B), InstantAnswers(), settings)


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[tuple[RouteTable, Swaps]]:
    routes, swaps = _open(tmp_path / "h.sqlite3")
    yield routes, swaps
    await swaps.close()
    routes.close()


async def _drive(
    routes: RouteTable, swaps: Swaps, swap_id: str, new_failure_rate: float, seed: int = 1
) -> Status:
    """Send calls by the route's split, as a gateway would, until the swap leaves CANARY."""
    rng = random.Random(seed)
    n = 0
    async with asyncio.timeout(10):
        while True:
            status = swaps.get(swap_id)
            if status.phase not in (
                Status.PHASE_PREPARING,
                Status.PHASE_WARMING,
                Status.PHASE_VALIDATING,
                Status.PHASE_CANARY,
            ):
                return status
            route = routes.get("chat")
            if status.phase != Status.PHASE_CANARY or route.split.id != swap_id:
                await asyncio.sleep(0)
                continue
            if status.steps and status.steps[-1].decision == "hold":
                return status
            new_share = route.split.arms[1].weight
            arm = "new" if rng.random() < new_share else "old"
            failed = arm == "new" and rng.random() < new_failure_rate
            n += 1
            swaps.record(
                hotswap_pb2.ArmOutcome(
                    split_id=swap_id,
                    arm=arm,
                    request_id=str(n),
                    failed=failed,
                    latency_ms=rng.gauss(50, 5),
                )
            )
            if n % 20 == 0:
                await asyncio.sleep(0)  # let the swap judge its step


async def _until_phase(swaps: Swaps, swap_id: str, phase: int) -> None:
    async with asyncio.timeout(5), aclosing(swaps.watch(swap_id)) as statuses:
        async for status in statuses:
            if status.phase == phase:
                return


async def _until_done(swaps: Swaps, swap_id: str) -> Status:
    async with asyncio.timeout(5), aclosing(swaps.watch(swap_id)) as statuses:
        async for status in statuses:
            last = status
    return last


async def test_a_new_version_failing_30_percent_is_rolled_back_with_the_decision_recorded(
    lab: tuple[RouteTable, Swaps],
) -> None:
    routes, swaps = lab
    started = swaps.start(hotswap_pb2.SwapRequest(alias="chat", target_model_id=B, canary=True))
    assert started.canary
    ended = await _drive(routes, swaps, started.swap_id, new_failure_rate=0.3)
    assert ended.phase == Status.PHASE_ROLLED_BACK
    step = ended.steps[-1]
    assert step.decision == "rollback"
    assert step.percent == 5
    assert step.new_requests >= 40 and step.new_error_rate > 0.1
    assert step.reason.startswith("the new version regressed at 5 %: error rate")
    assert ended.error == step.reason
    route = routes.get("chat")
    assert (route.model_id, route.split.id) == (A, "")  # every call on the old version again
    # Stored as it ended: a restart reads the same.
    stored = {s.swap_id: s for s in routes.store.load_swaps()}[started.swap_id]
    assert stored.phase == Status.PHASE_ROLLED_BACK and stored.steps[-1].decision == "rollback"


async def test_a_healthy_new_version_advances_step_by_step_and_switches(
    lab: tuple[RouteTable, Swaps],
) -> None:
    routes, swaps = lab
    started = swaps.start(hotswap_pb2.SwapRequest(alias="chat", target_model_id=B, canary=True))
    await _drive(routes, swaps, started.swap_id, new_failure_rate=0.0)
    done = await _until_done(swaps, started.swap_id)
    assert done.phase == Status.PHASE_DONE
    assert [(s.percent, s.decision) for s in done.steps] == [
        (5, "advance"),
        (25, "advance"),
        (50, "advance"),
    ]
    assert all(s.new_requests >= 40 for s in done.steps)
    assert done.canary_percent == 100
    route = routes.get("chat")
    assert (route.model_id, route.split.id) == (B, "")


async def test_with_rollback_on_failure_off_a_regression_holds_until_rolled_back(
    tmp_path: Path,
) -> None:
    policy = CanaryPolicy(steps=(10, 100), step_requests=30, step_s=0.0, rollback_on_failure=False)
    routes, swaps = _open(tmp_path / "h.sqlite3", policy)
    started = swaps.start(hotswap_pb2.SwapRequest(alias="chat", target_model_id=B, canary=True))
    held = await _drive(routes, swaps, started.swap_id, new_failure_rate=0.5)
    assert held.phase == Status.PHASE_CANARY
    assert held.steps[-1].decision == "hold"
    assert routes.get("chat").split.id == started.swap_id  # still split, for a person to decide
    rolled = await swaps.rollback(started.swap_id)
    assert rolled.phase == Status.PHASE_ROLLED_BACK
    assert rolled.error == "stopped during the canary at 10 %: 'up/a' serves every call again"
    route = routes.get("chat")
    assert (route.model_id, route.split.id) == (A, "")
    await swaps.close()
    routes.close()


async def test_a_restart_during_the_canary_puts_every_call_back_on_the_old_version(
    tmp_path: Path,
) -> None:
    routes, swaps = _open(tmp_path / "h.sqlite3")
    started = swaps.start(hotswap_pb2.SwapRequest(alias="chat", target_model_id=B, canary=True))
    await _until_phase(swaps, started.swap_id, Status.PHASE_CANARY)
    assert routes.get("chat").split.id == started.swap_id
    await swaps.close()
    routes.close()

    routes, swaps = _open(tmp_path / "h.sqlite3")
    after = swaps.get(started.swap_id)
    assert after.phase == Status.PHASE_ROLLED_BACK
    assert after.error == (
        "the hot-swap service restarted during the canary at 5 %; 'up/a' serves every call again"
    )
    route = routes.get("chat")
    assert (route.model_id, route.split.id) == (A, "")
    await swaps.close()
    routes.close()


async def test_a_canary_needs_a_model_serving_now(lab: tuple[RouteTable, Swaps]) -> None:
    routes, swaps = lab
    with pytest.raises(FailedPrecondition, match="alias 'new' has no route yet: a canary swap"):
        swaps.start(hotswap_pb2.SwapRequest(alias="new", target_model_id=B, canary=True))
    assert routes.find(alias="new") is None


def _step(old: tuple[int, int, float], new: tuple[int, int, float]) -> CanaryStep:
    step = CanaryStep(5, ArmStats("old", A), ArmStats("new", B))
    for arm, (calls, errors, latency) in (("old", old), ("new", new)):
        for i in range(calls):
            step.record(
                hotswap_pb2.ArmOutcome(arm=arm, failed=i < errors, latency_ms=latency + i % 3)
            )
    return step


def test_a_few_unlucky_calls_are_not_a_regression() -> None:
    # 2 of 50 against 1 of 500: 3.8 points above, under the 5-point threshold.
    assert judge(_step((500, 1, 50), (50, 2, 50)), POLICY).decision == "advance"
    # 6 of 50 (12 %) against 30 of 500 (6 %): over the threshold, within chance (z = 1.63).
    assert judge(_step((500, 30, 50), (50, 6, 50)), POLICY).decision == "advance"
    # 15 of 50 against 1 of 500: a regression.
    assert judge(_step((500, 1, 50), (50, 15, 50)), POLICY).decision == "rollback"


def test_a_slower_p95_regresses_only_beyond_both_thresholds() -> None:
    # 50 % slower but 5 ms: noise for a fast model.
    assert judge(_step((100, 0, 10), (50, 0, 15)), POLICY).decision == "advance"
    # 60 % and 30 ms slower: a regression.
    decided = judge(_step((100, 0, 50), (50, 0, 80)), POLICY)
    assert decided.decision == "rollback"
    assert "p95 latency 82.0 ms against 52.0 ms" in decided.reason
