"""The one-handle piece timer (`gateway/stream_deadlines.py` `PieceTimer`): the cases mutation
testing found unchecked (docs/testing.md).

A deadline that passes while the caller holds a piece is not the model's; a deadline that
comes due exactly when the timer fires has passed (not one loop turn later), and when the
call's deadline and a piece deadline fall on the same instant, the call's is the one named.
The exact instants are taken on a clock frozen for the test (the running loop's `time`),
so "exactly" is exact: the loop fires a handle when its instant is reached, whatever the
machine's load.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from modelyard.gateway.stream_deadlines import PieceDeadlines, PieceTimeExpired, PieceTimer


def test_an_expiry_says_which_deadline_passed() -> None:
    expired = PieceTimeExpired("stall", 0.5, 3)
    assert (str(expired), expired.args) == ("stall", ("stall",))
    assert (expired.which, expired.seconds, expired.pieces) == ("stall", 0.5, 3)


async def _at_once() -> int:
    return 1


async def test_time_the_caller_holds_a_piece_is_not_the_models() -> None:
    """Stall deadline 50 ms: two pieces at once, then the caller spends 200 ms on the
    second before it asks for the third, which comes at once: no stall."""
    timer = PieceTimer(None, PieceDeadlines(None, 0.05))
    try:
        assert [await timer.next(_at_once), await timer.next(_at_once)] == [1, 1]
        await asyncio.sleep(0.2)
        assert await timer.next(_at_once) == 1
        assert timer.pieces == 3
    finally:
        timer.close()


class _FrozenClock:
    """The running loop's `time`, standing still until told to move."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.now = loop.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def frozen(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[_FrozenClock]:
    loop = asyncio.get_running_loop()
    clock = _FrozenClock(loop)
    monkeypatch.setattr(loop, "time", clock)
    yield clock
    monkeypatch.undo()  # before the loop closes, on its own clock again


async def _waiting(timer: PieceTimer) -> asyncio.Task[object]:
    """A task waiting on `timer` for a piece that never comes."""
    never: asyncio.Future[object] = asyncio.get_running_loop().create_future()

    def read() -> asyncio.Future[object]:
        return never

    task = asyncio.create_task(timer.next(read))
    await asyncio.sleep(0)  # it starts waiting now, on the frozen clock
    return task


async def _expiry_after_turns(task: asyncio.Task[object], turns: int = 5) -> PieceTimeExpired:
    for _ in range(turns):
        await asyncio.sleep(0)
    assert task.done(), f"still waiting {turns} loop turns after its deadline"
    with pytest.raises(PieceTimeExpired) as info:
        await task
    return info.value


async def test_a_first_piece_deadline_reached_exactly_has_passed(frozen: _FrozenClock) -> None:
    timer = PieceTimer(None, PieceDeadlines(1.0, None))
    task = await _waiting(timer)
    try:
        frozen.now += 1.0
        expired = await _expiry_after_turns(task)
        assert (expired.which, expired.seconds, expired.pieces) == ("first_piece", 1.0, 0)
    finally:
        task.cancel()
        timer.close()


async def test_the_calls_deadline_falling_with_a_piece_deadline_is_the_one_named(
    frozen: _FrozenClock,
) -> None:
    timer = PieceTimer(1.0, PieceDeadlines(1.0, None))  # both due at the same instant
    task = await _waiting(timer)
    try:
        frozen.now += 1.0
        expired = await _expiry_after_turns(task)
        assert (expired.which, expired.seconds, expired.pieces) == ("call", 1.0, 0)
    finally:
        task.cancel()
        timer.close()
