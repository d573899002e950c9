"""A model that generates in a worker thread, streamed to the event loop piece by piece.

llama.cpp and faster-whisper both produce their output from a blocking iterator.
`pieces_from_thread` runs it in the default executor, hands each piece to the
loop as soon as it is ready, and raises there what the thread raised (an error of
the hierarchy as it is, anything else as `FailedPrecondition` naming `what`).
Closing the stream sets `cancel`, which the thread checks after each piece, and
waits for the thread: the model is idle before the caller releases it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Callable, Iterator

from modelyard.backends.engine import Piece
from modelyard_client.errors import FailedPrecondition, ModelyardError

_DONE = object()


async def pieces_from_thread(
    produce: Callable[[], Iterator[Piece]], cancel: threading.Event, what: str
) -> AsyncGenerator[Piece, None]:
    """Iterate `produce()` in a worker thread, yielding each piece as it arrives;
    `what` names the work in the error a failure becomes ("llama.cpp generation")."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()

    def run() -> None:
        try:
            for piece in produce():
                loop.call_soon_threadsafe(queue.put_nowait, piece)
                if cancel.is_set():
                    break
        except BaseException as exc:  # handed to the event loop, raised there
            loop.call_soon_threadsafe(queue.put_nowait, exc)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, _DONE)

    worker = loop.run_in_executor(None, run)
    try:
        while True:
            item = await queue.get()
            if item is _DONE:
                break
            if isinstance(item, ModelyardError):
                raise item
            if isinstance(item, BaseException):
                raise FailedPrecondition(f"{what} failed: {item}") from item
            assert isinstance(item, Piece)
            yield item
    finally:
        cancel.set()
        # The model must be idle before its lock is released to the next request.
        await asyncio.shield(worker)
