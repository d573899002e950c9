"""`Admission`: so many run, so many wait in order, the rest are refused at once with a delay."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

import pytest

from modelyard.backends.admission import Admission, gateway_admission
from modelyard_client.errors import Overloaded


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _admission(
    max_concurrency: int = 2, max_queue: int = 2, clock: Clock | None = None
) -> Admission:
    return Admission(
        "upstream:custom",
        "upstream 'custom'",
        f"backends.custom.max_concurrency={max_concurrency}, max_queue={max_queue}",
        max_concurrency,
        max_queue,
        clock=clock or Clock(),
    )


def _run_without_waiting(coro: Coroutine[Any, Any, None]) -> None:
    """Run `coro` to its end in one step: fail if it would have to wait for anything."""
    try:
        coro.send(None)
    except StopIteration:
        return
    coro.close()
    raise AssertionError("it suspended")


async def _hold(admission: Admission, entered: list[int], i: int, release: asyncio.Event) -> None:
    async with admission.slot():
        entered.append(i)
        await release.wait()


async def test_free_slots_are_taken_without_waiting() -> None:
    admission = _admission()
    first, second = admission.slot(), admission.slot()
    _run_without_waiting(first.__aenter__())
    _run_without_waiting(second.__aenter__())
    assert (admission.running, admission.waiting) == (2, 0)
    await first.__aexit__(None, None, None)
    await second.__aexit__(None, None, None)
    assert admission.running == 0


async def test_a_full_queue_refuses_at_once_naming_the_limits() -> None:
    admission = _admission()
    release = asyncio.Event()
    entered: list[int] = []
    calls = [asyncio.create_task(_hold(admission, entered, i, release)) for i in range(4)]
    await asyncio.sleep(0)
    assert (admission.running, admission.waiting) == (2, 2)
    with pytest.raises(Overloaded) as info:
        _run_without_waiting(admission.slot().__aenter__())  # refused in the same step
    err = info.value
    assert err.scope == "upstream:custom"
    assert err.retry_after_s == 2.0  # no call has finished: 1 s, times 1 + 2 waiting / 2 slots
    assert err.message == (
        "upstream 'custom' is at capacity: 2 call(s) running and 2 waiting "
        "(backends.custom.max_concurrency=2, max_queue=2); retry after 2.000s"
    )
    assert admission.shed == 1
    release.set()
    await asyncio.gather(*calls)
    assert (admission.running, admission.waiting) == (0, 0)


async def test_waiting_calls_enter_in_arrival_order_as_slots_free() -> None:
    admission = _admission(max_concurrency=1, max_queue=3)
    releases = [asyncio.Event() for _ in range(4)]
    entered: list[int] = []
    calls = [asyncio.create_task(_hold(admission, entered, i, releases[i])) for i in range(4)]
    await asyncio.sleep(0)
    assert entered == [0]
    for i in range(3):
        releases[i].set()
        await asyncio.sleep(0.01)
        assert entered == list(range(i + 2))
        assert admission.running == 1
    releases[3].set()
    await asyncio.gather(*calls)


async def test_a_waiter_that_is_cancelled_gives_its_place_up() -> None:
    admission = _admission(max_concurrency=1, max_queue=1)
    release = asyncio.Event()
    entered: list[int] = []
    holder = asyncio.create_task(_hold(admission, entered, 0, release))
    waiter = asyncio.create_task(_hold(admission, entered, 1, release))
    await asyncio.sleep(0)
    assert admission.waiting == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert admission.waiting == 0
    late = asyncio.create_task(_hold(admission, entered, 2, release))  # the place is free again
    await asyncio.sleep(0)
    assert admission.waiting == 1
    release.set()
    await asyncio.gather(holder, late)
    assert entered == [0, 2]
    assert admission.shed == 0


async def test_a_call_that_fails_gives_its_slot_back() -> None:
    admission = _admission(max_concurrency=1, max_queue=0)
    with pytest.raises(RuntimeError):
        async with admission.slot():
            raise RuntimeError("upstream broke")
    assert admission.running == 0
    async with admission.slot():
        assert admission.running == 1


async def test_a_waiter_cancelled_as_its_turn_comes_passes_the_slot_on() -> None:
    admission = _admission(max_concurrency=1, max_queue=2)
    release = asyncio.Event()
    entered: list[int] = []
    holder = admission.slot()
    await holder.__aenter__()
    first = asyncio.create_task(_hold(admission, entered, 1, release))
    second = asyncio.create_task(_hold(admission, entered, 2, release))
    await asyncio.sleep(0)
    assert admission.waiting == 2
    await holder.__aexit__(None, None, None)  # the slot is now the first waiter's...
    first.cancel()  # ...which is cancelled before it could run
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.sleep(0)
    assert entered == [2]
    assert (admission.running, admission.waiting) == (1, 0)
    release.set()
    await second
    assert admission.running == 0


async def test_the_retry_delay_follows_the_mean_hold_time_and_the_queue() -> None:
    clock = Clock()
    admission = _admission(max_concurrency=2, max_queue=2, clock=clock)
    for held in (4.0, 2.0):  # mean: 4.0, then 4.0 + 0.1 * (2.0 - 4.0) = 3.8
        async with admission.slot():
            clock.now += held
    assert admission.mean_hold_s == pytest.approx(3.8)
    assert admission.retry_after_s() == pytest.approx(3.8)  # nobody waiting: one hold
    release = asyncio.Event()
    calls = [asyncio.create_task(_hold(admission, [], i, release)) for i in range(4)]
    await asyncio.sleep(0)
    assert admission.waiting == 2
    assert admission.retry_after_s() == pytest.approx(7.6)  # two waiting on two slots: two
    release.set()
    await asyncio.gather(*calls)


@pytest.mark.parametrize(("held", "retry"), [(0.001, 0.1), (500.0, 60.0)])
async def test_the_retry_delay_is_kept_between_a_tenth_of_a_second_and_a_minute(
    held: float, retry: float
) -> None:
    clock = Clock()
    admission = _admission(clock=clock)
    async with admission.slot():
        clock.now += held
    assert admission.retry_after_s() == retry


async def test_shedding_is_logged_once_per_ten_seconds_with_the_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    admission = _admission(max_concurrency=1, max_queue=0, clock=clock)
    async with admission.slot():
        with caplog.at_level(logging.WARNING, "modelyard.backends.admission"):
            for at in (0.0, 1.0, 9.9, 10.0, 10.5):
                clock.now = 100.0 + at
                admission.refuse()
    assert [r.getMessage() for r in caplog.records] == [
        "upstream 'custom' is full (1 running, 0 waiting; backends.custom.max_concurrency=1, "
        f"max_queue=0): refused {n} call(s) with RESOURCE_EXHAUSTED since the last report"
        for n in (1, 3)
    ]
    assert admission.shed == 5


async def test_the_gateway_bound_queues_nothing() -> None:
    admission = gateway_admission(1)
    async with admission.slot():
        with pytest.raises(Overloaded) as info:
            _run_without_waiting(admission.slot().__aenter__())
    assert info.value.scope == "gateway"
    assert admission.refused(info.value)
    assert not _admission().refused(info.value)
    assert info.value.message == (
        "this gateway is at capacity: 1 call(s) running and 0 waiting "
        "(gateway.max_in_flight=1); retry after 1.000s"
    )


@pytest.mark.parametrize(("max_concurrency", "max_queue"), [(0, 1), (1, -1)])
def test_limits_out_of_range_are_refused(max_concurrency: int, max_queue: int) -> None:
    with pytest.raises(ValueError, match="max_concurrency must be >= 1 and max_queue >= 0"):
        _admission(max_concurrency, max_queue)
