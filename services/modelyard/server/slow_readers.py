"""Writing a stream's items, and cutting a client that stops reading them.

How grpc.aio applies flow control to a server stream: for an async-generator
handler it runs ``async for item in handler(...): await context.write(item)``,
and ``write`` completes only once the transport has taken the message, which
HTTP/2 flow control stops once the client's window is full. A client that stops
reading therefore suspends the handler at its ``yield``: nothing more is pulled
from the backend, and what waits is bounded by that window (the client's
receive buffer, a few MiB at most with BDP probing) plus the one message in
the gateway. Measured on loopback with 1 KiB chunks: about 4,600 chunks reach
the client's buffer, then the stream's producer stands still.

Bounded, but held for as long as the client likes, with a backend call (and its
slots) open behind it. `write_all` does the writes itself (the interceptor
makes every stream a reader/writer handler) and gives each one
`slow_reader_timeout`: a write that has not completed by then cancels the call's
task (one watchdog timer per stream, `_Watchdog`), which ends in `SlowReaderCut`
raised right there, so the generator chain is closed from inside the call — down
to the backend call, cancelled — rather than left to the garbage collector as a
cancelled ``yield`` would be.
The status goes out behind what the client has not read yet: the client sees
ABORTED (reason SLOW_READER) after the chunks it already had.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from modelyard_client.errors import SlowReaderCut


async def write_all(items: AsyncIterator[Any], context: Any, timeout_s: float | None) -> None:
    """Write every item of `items` to the stream of `context`; `SlowReaderCut` when one
    write waits longer than `timeout_s` (None or 0: as long as it takes)."""
    write = context.write
    if not timeout_s:
        async for item in items:
            try:
                await write(item)
            except grpc.aio.AbortError:
                raise
            except grpc.aio.BaseError as exc:
                raise _over(exc) from exc
        return
    task = asyncio.current_task()
    assert task is not None
    watch = _Watchdog(asyncio.get_running_loop(), task, timeout_s)
    try:
        async for item in items:
            watch.writing = watch.loop.time()
            try:
                await write(item)
            except asyncio.CancelledError:
                if not watch.fired:
                    raise  # the client went away, or the server stops
                task.uncancel()
                raise SlowReaderCut(
                    f"the client read nothing for {timeout_s:g}s; the stream was cut "
                    "(security.input_limits.slow_reader_timeout)",
                    timeout_s=timeout_s,
                ) from None
            except grpc.aio.AbortError:
                raise
            except grpc.aio.BaseError as exc:
                raise _over(exc) from exc
            watch.writing = 0.0
    finally:
        watch.stop()


class _Watchdog:
    """One stream's timer: it wakes every `timeout_s` or so, and cancels the call's
    task when the write under way began `timeout_s` ago or more. One timer for the
    stream, not one per write: a write only notes when it began."""

    __slots__ = ("_task", "_timeout_s", "_timer", "fired", "loop", "writing")

    def __init__(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any], timeout_s: float):
        self.loop = loop
        self._task = task
        self._timeout_s = timeout_s
        self.writing = 0.0  # the loop's time the write under way began; 0: none
        self.fired = False
        self._timer = loop.call_later(timeout_s, self._check)

    def _check(self) -> None:
        began, now = self.writing, self.loop.time()
        if began and now - began >= self._timeout_s:
            self.fired = True
            self._task.cancel()
            return
        self._timer = self.loop.call_at((began or now) + self._timeout_s, self._check)

    def stop(self) -> None:
        self._timer.cancel()


def _over(exc: grpc.aio.BaseError) -> asyncio.CancelledError:
    """A write to a call already over (the client left, the server stops) ends as a
    cancel, as grpc's own loop treats it, not as a fault of the handler."""
    return asyncio.CancelledError(f"the call is over: {type(exc).__name__}")
