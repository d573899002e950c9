"""Hedged attempts: a second attempt when the first is slow to start, the first to answer wins.

A model whose first piece is later than its hedge delay gets a second
attempt (the next deployment or fallback) started beside it; whichever
yields a piece first is the answer, and the other is closed (its backend
call cancelled). Only the start is raced: once a piece has come, the winner
streams alone. An attempt that fails before its first piece leaves the race
to the other; when both fail, the first one's error is the call's (the
hedge's would hide the original failure).

Free of the gateway: `race` takes the first attempt and a function that
starts the hedge, and returns the winner with its first piece.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class Won(Generic[T]):
    """The attempt that answered first, its first piece, and whether it is the hedge."""

    stream: AsyncGenerator[T, None]
    first: T
    hedged: bool


async def race(
    primary: AsyncGenerator[T, None],
    hedge_after_s: float,
    start_hedge: Callable[[], AsyncGenerator[T, None] | None],
) -> Won[T] | None:
    """The first of `primary` and, if `primary` has not yielded within `hedge_after_s`,
    the attempt `start_hedge` makes (None: no hedge to make). None when every attempt
    ended without yielding anything. The loser is closed; the winner is the caller's
    to close. When both fail, the primary's error is raised."""
    first = asyncio.ensure_future(_first(primary))
    try:
        done, _ = await asyncio.wait({first}, timeout=hedge_after_s)
    except BaseException:  # the caller went away during the delay: its attempt goes too
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        raise
    hedge = None if done else start_hedge()
    if hedge is None:
        try:
            return Won(primary, await first, hedged=False)
        except _Empty:
            return None
    second = asyncio.ensure_future(_first(hedge))
    streams = {first: (primary, False), second: (hedge, True)}
    pending = set(streams)
    failures: dict[asyncio.Future[T], BaseException] = {}
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            # The primary first when both finished at once: it is the one asked for.
            for task in sorted(done, key=lambda t: t is not first):
                exc = task.exception()
                if exc is not None:
                    failures[task] = exc
                    continue
                stream, hedged = streams[task]
                loser = hedge if task is first else primary
                for other in pending:
                    other.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                pending = set()
                with contextlib.suppress(Exception):
                    await loser.aclose()
                return Won(stream, task.result(), hedged)
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    real = [failures[t] for t in (first, second) if not isinstance(failures[t], _Empty)]
    if real:
        raise real[0]  # the primary's, when it has one: the hedge's would hide it
    return None


class _Empty(Exception):
    """The attempt ended without yielding: no first piece."""


async def _first(stream: AsyncGenerator[T, None]) -> T:
    try:
        return await anext(stream)
    except StopAsyncIteration:
        raise _Empty from None
