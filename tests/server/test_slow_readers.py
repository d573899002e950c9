"""The interceptor writes every stream itself (`server/slow_readers.py`): a client that
leaves while a write waits ends the call from inside it, its generators closed in its own
context, the backend call with them — not by the garbage collector's finalizer task."""

from __future__ import annotations

import asyncio
import logging

import grpc
import pytest
from conftest import StackFactory
from support.endless_engine import EndlessEngine

from modelyard.config import parse_config
from modelyard.v1 import audit_pb2, audit_pb2_grpc, gateway_pb2, gateway_pb2_grpc


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
