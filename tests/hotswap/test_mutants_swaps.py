"""Drain-first swaps and restarts on a task type's route: the switch, its validation's time
limit, the switch back, the logs, and what a restart finds (killing mutmut's survivors in
`hotswap.swaps`: `_switch_first`, `_recovered`, `_has_switched`).

`Swaps` over a real route table in SQLite; the loader holds one model at a time (a local
backend's memory budget), and the validator records the time limit of each answer.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Sequence
from contextlib import aclosing
from pathlib import Path

import pytest
from hotswap.swap_fakes import InstantAnswers, SmallCatalog

from modelyard.hotswap.canary import CanaryPolicy
from modelyard.hotswap.routes import RouteTable
from modelyard.hotswap.store import HotSwapStore
from modelyard.hotswap.swaps import Swaps, SwapSettings
from modelyard_client.errors import MemoryBudgetExceeded, StreamTruncated
from modelyard_client.v1 import common_pb2, hotswap_pb2, selector_pb2

Status = hotswap_pb2.SwapStatus
A, B = "local/a", "local/b"
CODE = selector_pb2.TASK_TYPE_CODE
LOGGER = "modelyard.hotswap.swaps"


class OneModelBudget:
    """Holds one model: loading one beside another is refused."""

    async def prepare(self, model: common_pb2.ModelEntry, keep_loaded: Sequence[str]) -> None:
        if keep_loaded:
            raise MemoryBudgetExceeded(
                model.id, {model.id: 300, **dict.fromkeys(keep_loaded, 300)}, 400, 2
            )

    async def release(self, model: common_pb2.ModelEntry) -> None:
        pass


class Answers:
    """Answers every prompt (or fails them, `fail`), once `release` is set; records each
    answer's time limit."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.release = asyncio.Event()
        self.release.set()
        self.asked = asyncio.Event()
        self.timeouts: list[float] = []

    async def answer(self, model: common_pb2.ModelEntry, prompt: str, timeout_s: float) -> None:
        self.timeouts.append(timeout_s)
        self.asked.set()
        await self.release.wait()
        if self.fail:
            raise StreamTruncated(f"'{model.id}' ended its answer without a finish reason")


def _open(
    path: Path, answers: Answers | None = None, canary: CanaryPolicy | None = None
) -> tuple[RouteTable, Swaps]:
    """The code task's route on A, swaps that switch first when the budget is short."""
    routes = RouteTable(HotSwapStore(path))
    routes.seed({}, {CODE: A})
    settings = SwapSettings(grace_period_s=0.0, when_budget_short="drain_first")
    if canary is not None:
        settings = SwapSettings(grace_period_s=0.0, canary=canary)
    swaps = Swaps(
        routes,
        routes.store,
        SmallCatalog(A, B),
        answers if answers is not None else InstantAnswers(),
        settings,
        loader=OneModelBudget() if canary is None else None,
    )
    return routes, swaps


def _served_by(routes: RouteTable) -> str:
    route = routes.find(task_type=CODE)
    assert route is not None
    return route.model_id


async def _ended(swaps: Swaps, swap_id: str) -> Status:
    async with asyncio.timeout(5), aclosing(swaps.watch(swap_id)) as statuses:
        async for status in statuses:
            last = status
    return last


def _swap_to_b(swaps: Swaps, **fields: object) -> Status:
    """Start a swap of the code task's route to B; `fields`: more `SwapRequest` fields."""
    request = hotswap_pb2.SwapRequest(task_type=CODE, target_model_id=B)
    for name, value in fields.items():
        setattr(request, name, value)
    return swaps.start(request)


async def test_a_drain_first_swap_validates_within_grace_and_timeout_and_ends_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    answers = Answers()
    routes, swaps = _open(tmp_path / "h.sqlite3", answers)
    try:
        began = time.monotonic()
        swap = _swap_to_b(swaps, grace_period_ms=200, validation_timeout_ms=1500)
        ended = await _ended(swaps, swap.swap_id)
        assert time.monotonic() - began < 0.8  # no grace period after the validation
        assert (ended.phase, ended.error, ended.switched_first) == (Status.PHASE_DONE, "", True)
        assert _served_by(routes) == B
        # The first answer waits for the previous version to drain: grace plus timeout.
        assert answers.timeouts[0] == pytest.approx(1.7)
        assert [r.getMessage() for r in caplog.records if "switched first" in r.getMessage()] == [
            f"swap {swap.swap_id}: the memory budget holds one of 'local/a' and 'local/b': "
            "switched first"
        ]
    finally:
        await swaps.close()
        routes.close()


async def test_a_drain_first_swap_that_fails_switches_back_for_good(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    path = tmp_path / "h.sqlite3"
    routes, swaps = _open(path, Answers(fail=True))
    error = (
        "warming after a drain-first switch: 'local/b' ended its answer without a finish "
        "reason; 'local/a' serves task type code again"
    )
    try:
        swap = _swap_to_b(swaps)
        ended = await _ended(swaps, swap.swap_id)
        assert (ended.phase, ended.error) == (Status.PHASE_ROLLED_BACK, error)
        assert _served_by(routes) == A
        rolled = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert rolled == [f"swap {swap.swap_id} rolled back: {error}"]
        # The route is free again: the next swap starts.
        again = _swap_to_b(swaps)
        assert (await _ended(swaps, again.swap_id)).phase == Status.PHASE_ROLLED_BACK
    finally:
        await swaps.close()
        routes.close()
    # Stored as it ended, with the route: a restart reads the same.
    routes, swaps = _open(path)
    try:
        after = swaps.get(swap.swap_id)
        assert (after.phase, after.error) == (Status.PHASE_ROLLED_BACK, error)
        assert _served_by(routes) == A
    finally:
        await swaps.close()
        routes.close()


async def test_a_restart_mid_validation_puts_the_previous_model_back_on_the_task_route(
    tmp_path: Path,
) -> None:
    path = tmp_path / "h.sqlite3"
    answers = Answers()
    answers.release.clear()
    routes, swaps = _open(path, answers)
    swap = _swap_to_b(swaps)
    async with asyncio.timeout(5):
        await answers.asked.wait()
    assert _served_by(routes) == B
    await swaps.close()
    routes.close()

    routes, swaps = _open(path)
    try:
        after = swaps.get(swap.swap_id)
        assert (after.phase, after.error) == (
            Status.PHASE_ROLLED_BACK,
            "the hot-swap service restarted during warming, after a drain-first switch; "
            "'local/a' serves task type code again",
        )
        assert _served_by(routes) == A
    finally:
        await swaps.close()
        routes.close()


async def test_rolling_back_a_drain_first_swap_mid_validation_puts_the_previous_model_back(
    tmp_path: Path,
) -> None:
    answers = Answers()
    answers.release.clear()
    routes, swaps = _open(tmp_path / "h.sqlite3", answers)
    try:
        swap = _swap_to_b(swaps)
        async with asyncio.timeout(5):
            await answers.asked.wait()
        assert _served_by(routes) == B  # switched first, still warming
        ended = await swaps.rollback(swap.swap_id)
        assert (ended.phase, ended.error) == (
            Status.PHASE_ROLLED_BACK,
            "'local/a' serves task type code again",
        )
        assert _served_by(routes) == A
    finally:
        await swaps.close()
        routes.close()


POLICY = CanaryPolicy(steps=(5, 25, 50, 100), step_requests=40, step_s=0.0)


async def _in_canary(swaps: Swaps, swap_id: str) -> None:
    async with asyncio.timeout(5), aclosing(swaps.watch(swap_id)) as statuses:
        async for status in statuses:
            if status.phase == Status.PHASE_CANARY:
                return


async def test_a_restart_during_a_task_routes_canary_ends_its_split(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    routes, swaps = _open(path, canary=POLICY)
    swap = _swap_to_b(swaps, canary=True)
    await _in_canary(swaps, swap.swap_id)
    route = routes.find(task_type=CODE)
    assert route is not None and route.split.id == swap.swap_id
    await swaps.close()
    routes.close()

    routes, swaps = _open(path, canary=POLICY)
    try:
        after = swaps.get(swap.swap_id)
        assert after.phase == Status.PHASE_ROLLED_BACK
        route = routes.find(task_type=CODE)
        assert route is not None and (route.model_id, route.split.id) == (A, "")
    finally:
        await swaps.close()
        routes.close()


async def test_a_restart_during_a_canary_leaves_a_split_that_is_not_the_swaps(
    tmp_path: Path,
) -> None:
    path = tmp_path / "h.sqlite3"
    routes, swaps = _open(path, canary=POLICY)
    swap = _swap_to_b(swaps, canary=True)
    await _in_canary(swaps, swap.swap_id)
    await swaps.close()
    # While the service was down, the route was given another split.
    other = hotswap_pb2.Split(
        id="other-1",
        kind=hotswap_pb2.Split.KIND_CANARY,
        arms=[
            hotswap_pb2.ABArm(name="old", model_id=A, weight=0.9),
            hotswap_pb2.ABArm(name="new", model_id=B, weight=0.1),
        ],
    )
    routes.set_route("", CODE, A, split=other)
    routes.close()

    routes, swaps = _open(path, canary=POLICY)
    try:
        assert swaps.get(swap.swap_id).phase == Status.PHASE_ROLLED_BACK
        route = routes.find(task_type=CODE)
        assert route is not None and route.split == other
    finally:
        await swaps.close()
        routes.close()


class FailingStore(HotSwapStore):
    """A store whose swap writes fail (a full disk) once `failing` is set."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.failing = False
        self.refused = asyncio.Event()

    def put_swap(self, swap: hotswap_pb2.SwapStatus) -> None:
        if self.failing:
            self.refused.set()
            raise sqlite3.OperationalError("database or disk is full")
        super().put_swap(swap)


async def test_a_drain_first_switch_stores_the_swap_with_the_route(tmp_path: Path) -> None:
    # The switch writes the route and the swap's SWITCHED status in one transaction: when the
    # next write fails, a restart still knows the route moved.
    path = tmp_path / "h.sqlite3"
    store = FailingStore(path)
    routes = RouteTable(store)
    routes.seed({}, {CODE: A})
    swaps = Swaps(
        routes,
        store,
        SmallCatalog(A, B),
        InstantAnswers(),
        SwapSettings(grace_period_s=0.0, when_budget_short="drain_first"),
        loader=OneModelBudget(),
    )
    swap = _swap_to_b(swaps)
    store.failing = True  # from the first write after the switch (WARMING)
    async with asyncio.timeout(5):
        await store.refused.wait()
    assert _served_by(routes) == B
    store.failing = False
    await swaps.close()
    routes.close()

    routes, swaps = _open(path)
    try:
        after = swaps.get(swap.swap_id)
        assert (after.phase, after.error) == (
            Status.PHASE_DONE,
            "the hot-swap service restarted while draining; the route stays on the target",
        )
        assert _served_by(routes) == B
    finally:
        await swaps.close()
        routes.close()


async def test_a_swap_whose_store_fails_ends_failed_and_frees_its_route(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Not an error of the hierarchy (a full disk): the swap still ends, FAILED and logged,
    # and the route takes the next swap instead of being held by a dead task.
    store = FailingStore(tmp_path / "h.sqlite3")
    routes = RouteTable(store)
    routes.seed({}, {CODE: A})
    swaps = Swaps(
        routes, store, SmallCatalog(A, B), InstantAnswers(), SwapSettings(grace_period_s=0.0)
    )
    try:
        first = _swap_to_b(swaps)
        store.failing = True  # from the task's first write (to WARMING), before it runs
        ended = await _ended(swaps, first.swap_id)
        assert (ended.phase, ended.error) == (
            Status.PHASE_FAILED,
            "preparing: internal error (OperationalError)",  # its move to WARMING failed
        )
        assert _served_by(routes) == A
        assert any(
            r.levelno == logging.ERROR and first.swap_id in r.getMessage() for r in caplog.records
        )
        store.failing = False
        second = _swap_to_b(swaps)
        assert (await _ended(swaps, second.swap_id)).phase == Status.PHASE_DONE
        assert _served_by(routes) == B
    finally:
        await swaps.close()
        routes.close()


async def _drive_canary(routes: RouteTable, swaps: Swaps, swap_id: str, new_fails: bool) -> Status:
    """Report 40 calls of each version for every canary step (the new ones failing, or not)
    until the swap leaves its canary."""
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
            route = routes.find(task_type=CODE)
            if status.phase == Status.PHASE_CANARY and route is not None and route.split.id:
                for arm in ("old", "new"):
                    for _ in range(40):
                        n += 1
                        swaps.record(
                            hotswap_pb2.ArmOutcome(
                                split_id=swap_id,
                                arm=arm,
                                request_id=str(n),
                                failed=new_fails and arm == "new",
                                latency_ms=50.0,
                            )
                        )
            await asyncio.sleep(0.01)


async def test_a_task_routes_canary_logs_each_step_and_forgets_its_split_once_switched(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    routes, swaps = _open(tmp_path / "h.sqlite3", canary=POLICY)
    try:
        swap = _swap_to_b(swaps, canary=True)
        ended = await _drive_canary(routes, swaps, swap.swap_id, new_fails=False)
        assert ended.phase == Status.PHASE_DONE
        assert [s.decision for s in ended.steps] == ["advance"] * 3
        assert [r.getMessage() for r in caplog.records if "canary swap" in r.getMessage()] == [
            f"canary swap {swap.swap_id}: {s.decision} ({s.reason})" for s in ended.steps
        ]
        assert _served_by(routes) == B
        # Its split is gone: a late outcome of it is no canary's.
        late = hotswap_pb2.ArmOutcome(split_id=swap.swap_id, arm="new", request_id="late")
        assert not swaps.record(late)
    finally:
        await swaps.close()
        routes.close()


async def test_a_task_routes_canary_that_regresses_rolls_back_and_frees_the_route(
    tmp_path: Path,
) -> None:
    routes, swaps = _open(tmp_path / "h.sqlite3", canary=POLICY)
    try:
        swap = _swap_to_b(swaps, canary=True)
        ended = await _drive_canary(routes, swaps, swap.swap_id, new_fails=True)
        assert ended.phase == Status.PHASE_ROLLED_BACK
        route = routes.find(task_type=CODE)
        assert route is not None and (route.model_id, route.split.id) == (A, "")
        again = _swap_to_b(swaps, canary=True)  # the route is free for the next swap
        assert again.swap_id != swap.swap_id
    finally:
        await swaps.close()
        routes.close()


async def test_a_canary_whose_only_step_is_100_percent_switches_at_once(tmp_path: Path) -> None:
    # hot_swap.canary.steps: [100] is valid configuration: no step to judge.
    routes, swaps = _open(tmp_path / "h.sqlite3", canary=CanaryPolicy(steps=(100,)))
    try:
        swap = _swap_to_b(swaps, canary=True)
        ended = await _ended(swaps, swap.swap_id)
        assert (ended.phase, ended.error, list(ended.steps)) == (Status.PHASE_DONE, "", [])
        assert _served_by(routes) == B
    finally:
        await swaps.close()
        routes.close()


async def test_once_a_canary_switches_its_splits_outcomes_are_no_longer_counted(
    tmp_path: Path,
) -> None:
    routes, swaps = _open(tmp_path / "h.sqlite3", canary=POLICY)
    try:
        swap = _swap_to_b(swaps, canary=True, grace_period_ms=5000)
        draining = asyncio.ensure_future(_until_draining(swaps, swap.swap_id))
        await _drive_canary(routes, swaps, swap.swap_id, new_fails=False)
        await draining
        late = hotswap_pb2.ArmOutcome(split_id=swap.swap_id, arm="new", request_id="late")
        assert not swaps.record(late)
    finally:
        await swaps.close()
        routes.close()


async def _until_draining(swaps: Swaps, swap_id: str) -> None:
    async with asyncio.timeout(10), aclosing(swaps.watch(swap_id)) as statuses:
        async for status in statuses:
            if status.phase == Status.PHASE_DRAINING:
                return
