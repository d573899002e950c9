"""Hedged attempts: who wins the start, who is closed, whose error is the call's."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator

import pytest

from modelyard.gateway.hedging import race
from modelyard_client.errors import BackendUnavailable, StreamTruncated


class Attempt:
    """An attempt whose first piece comes after `delay_s` (or that fails then); records
    whether it was closed before it finished."""

    def __init__(self, name: str, delay_s: float, fail: Exception | None = None) -> None:
        self.name = name
        self.delay_s = delay_s
        self.fail = fail
        self.closed = False
        self.finished = False

    async def stream(self) -> AsyncGenerator[str, None]:
        try:
            await asyncio.sleep(self.delay_s)
            if self.fail is not None:
                raise self.fail
            yield f"{self.name}:1"
            yield f"{self.name}:2"
            self.finished = True
        except (asyncio.CancelledError, GeneratorExit):
            self.closed = True
            raise


async def _rest(stream: AsyncGenerator[str, None]) -> list[str]:
    return [piece async for piece in stream]


async def test_a_fast_primary_is_never_hedged() -> None:
    primary = Attempt("p", 0.0)
    started: list[str] = []

    def hedge() -> AsyncGenerator[str, None]:
        started.append("hedge")
        return Attempt("h", 0.0).stream()

    won = await race(primary.stream(), 0.2, hedge)
    assert won is not None and (won.first, won.hedged) == ("p:1", False)
    assert await _rest(won.stream) == ["p:2"]
    assert started == []


async def test_a_slow_primary_loses_to_its_hedge_and_is_cancelled() -> None:
    primary, hedge = Attempt("p", 5.0), Attempt("h", 0.0)
    began = time.monotonic()
    won = await race(primary.stream(), 0.05, hedge.stream)
    assert won is not None and (won.first, won.hedged) == ("h:1", True)
    assert time.monotonic() - began < 1.0  # the hedge's time, not the primary's 5 s
    assert primary.closed
    assert await _rest(won.stream) == ["h:2"]


async def test_a_primary_that_answers_while_the_hedge_waits_wins() -> None:
    primary, hedge = Attempt("p", 0.1), Attempt("h", 5.0)
    won = await race(primary.stream(), 0.05, hedge.stream)
    assert won is not None and (won.first, won.hedged) == ("p:1", False)
    assert hedge.closed


async def test_no_hedge_to_make_waits_for_the_primary() -> None:
    won = await race(Attempt("p", 0.1).stream(), 0.01, lambda: None)
    assert won is not None and won.first == "p:1"


async def test_a_failed_primary_leaves_the_race_to_the_hedge() -> None:
    primary = Attempt("p", 0.1, fail=BackendUnavailable("p is down"))
    won = await race(primary.stream(), 0.05, Attempt("h", 0.2).stream)
    assert won is not None and (won.first, won.hedged) == ("h:1", True)


async def test_when_both_fail_the_primarys_error_is_the_calls() -> None:
    primary = Attempt("p", 0.1, fail=BackendUnavailable("p is down"))
    hedge = Attempt("h", 0.0, fail=StreamTruncated("h cut"))
    with pytest.raises(BackendUnavailable, match="p is down"):
        await race(primary.stream(), 0.05, hedge.stream)


async def test_attempts_that_end_empty_give_none() -> None:
    async def empty() -> AsyncGenerator[str, None]:
        await asyncio.sleep(0.1)
        return
        yield  # an async generator that yields nothing

    assert await race(empty(), 0.01, empty) is None
    assert await race(empty(), 1.0, lambda: None) is None


async def test_a_caller_gone_during_the_hedge_delay_takes_the_primary_with_it() -> None:
    """Cancelled while waiting for the primary's first piece (the client left): the
    primary's backend call ends then, not whenever it would have answered."""
    primary, hedge = Attempt("p", 5.0), Attempt("h", 0.0)
    racing = asyncio.ensure_future(race(primary.stream(), 10.0, hedge.stream))
    await asyncio.sleep(0.05)
    racing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await racing
    assert primary.closed
    assert not hedge.closed and not hedge.finished  # never started
