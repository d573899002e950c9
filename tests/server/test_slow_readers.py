"""The interceptor writes every stream itself (`server/slow_readers.py`): a client that
leaves while a write waits ends the call from inside it, its generators closed in its own
context, the backend call with them — not by the garbage collector's finalizer task."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc
import pytest
from conftest import StackFactory
from support.endless_engine import EndlessEngine

from modelyard.config import parse_config
from modelyard.server.slow_readers import write_all
from modelyard_client.errors import SlowReaderCut
from modelyard_client.v1 import audit_pb2, audit_pb2_grpc, gateway_pb2, gateway_pb2_grpc


async def test_a_client_that_cancels_a_blocked_stream_ends_its_backend_call_at_once(
    make_stack: StackFactory, caplog: pytest.LogCaptureFixture
) -> None:
    engine = EndlessEngine()
    config = parse_config("model_system: {security: {input_limits: {slow_reader_timeout: 5m}}}")
    stack = await make_stack(roles=("registry", "gateway"), engines=[engine], config=config)
    request = gateway_pb2.GenerateRequest(model="scripted/echo")
    request.input.text = "hi"
    async with grpc.aio.insecure_channel(stack.address) as channel:
        call = gateway_pb2_grpc.GatewayServiceStub(channel).GenerateStream(request, timeout=30)
        await call.read()
        await engine.settled()  # the write waits on the full window
        with caplog.at_level(logging.WARNING):
            call.cancel()
            await asyncio.wait_for(engine.closed.wait(), 5)
            await asyncio.sleep(0.2)
        reply = await audit_pb2_grpc.AuditServiceStub(channel).QueryAudit(
            audit_pb2.QueryAuditRequest(rpc="GenerateStream"), timeout=10
        )
    assert [(e.code, e.reason) for e in reply.entries] == [("CANCELLED", "")]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


class _Context:
    """A stream's context whose writes take `write_s` each (None: never complete); after
    `stall_after` writes, none completes (the client stops reading)."""

    def __init__(self, write_s: float | None = 0.0, stall_after: int | None = None) -> None:
        self.write_s = write_s
        self.stall_after = stall_after
        self.written: list[int] = []

    async def write(self, item: int) -> None:
        if self.write_s is None or len(self.written) == self.stall_after:
            await asyncio.Event().wait()
        await asyncio.sleep(self.write_s or 0)
        self.written.append(item)


async def _items(count: int, pause_s: float) -> AsyncIterator[int]:
    for i in range(count):
        await asyncio.sleep(pause_s)
        yield i


async def test_a_slow_producer_is_never_cut_only_a_write_that_waits() -> None:
    # The watchdog times each write, not the stream: pauses between pieces three times the
    # timeout, and a stream longer than many timeouts, both go through whole.
    context = _Context()
    await write_all(_items(3, 0.3), context, timeout_s=0.1)
    assert context.written == [0, 1, 2]
    context = _Context(write_s=0.02)
    await write_all(_items(20, 0.0), context, timeout_s=0.1)  # 0.4 s in all
    assert context.written == list(range(20))


async def test_a_write_that_waits_past_the_timeout_is_cut_even_after_fast_ones() -> None:
    context = _Context(stall_after=10)
    started = asyncio.get_running_loop().time()
    with pytest.raises(SlowReaderCut) as info:
        await write_all(_items(50, 0.01), context, timeout_s=0.2)
    waited = asyncio.get_running_loop().time() - started
    assert context.written == list(range(10))
    assert info.value.reason == "SLOW_READER"
    assert 0.3 <= waited < 1.0  # ~0.1 s of fast writes, then the stalled one's 0.2 s
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]  # uncancelled


async def test_a_cancel_from_outside_stays_a_cancel() -> None:
    context = _Context(write_s=None)
    task = asyncio.create_task(write_all(_items(3, 0.0), context, timeout_s=5))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
