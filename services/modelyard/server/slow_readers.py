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
task, which ends in `SlowReaderCut` raised right there, so the generator
chain is closed from inside the call — down to the backend call, cancelled —
rather than left to the garbage collector as a cancelled ``yield`` would be.
The status goes out behind what the client has not read yet: the client sees
ABORTED (reason SLOW_READER) after the chunks it already had.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from modelyard.errors import SlowReaderCut


async def write_all(items: AsyncIterator[Any], context: Any, timeout_s: float | None) -> None:
    """Write every item of `items` to the stream of `context`; `SlowReaderCut` when one
    write waits longer than `timeout_s` (None or 0: as long as it takes)."""
    if not timeout_s:
        async for item in items:
            await _write(context, item)
        return
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    stalled = False

    def cut() -> None:
        nonlocal stalled
        stalled = True
        task.cancel()

    async for item in items:
        timer = loop.call_later(timeout_s, cut)  # one timer per write, ~1 µs
        try:
            await _write(context, item)
        except asyncio.CancelledError:
            if not stalled:
                raise  # the client went away, or the server stops
            task.uncancel()
            raise SlowReaderCut(
                f"the client read nothing for {timeout_s:g}s; the stream was cut "
                "(security.input_limits.slow_reader_timeout)",
                timeout_s=timeout_s,
            ) from None
        finally:
            timer.cancel()


async def _write(context: Any, item: Any) -> None:
    """One write; a call already over (the client left, the server stops) ends as a cancel,
    as grpc's own loop treats it, not as a fault of the handler."""
    try:
        await context.write(item)
    except grpc.aio.AbortError:
        raise
    except grpc.aio.BaseError as exc:
        raise asyncio.CancelledError(f"the call is over: {type(exc).__name__}") from exc
