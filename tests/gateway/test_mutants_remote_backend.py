"""The gateway's gRPC path to a backend in another server (docs/testing.md).

Gateway and backend as two in-process servers, as in the split deployment:
the client span of each backend call, and a chunk above gRPC's 4 MiB default.
"""

from __future__ import annotations

import grpc
import pytest
from conftest import StackFactory
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from support.scripted_engine import ScriptedEngine

from modelyard_client.errors import BackendUnavailable
from modelyard_client.v1 import gateway_pb2, gateway_pb2_grpc

BIG = 5 * 1024 * 1024  # above gRPC's 4 MiB receive default


async def _split(make_stack: StackFactory, engine: ScriptedEngine) -> tuple[str, str]:
    backend = await make_stack(roles=("registry",), engines=[engine])
    gateway = await make_stack(roles=("gateway",), registry_address=backend.address)
    return gateway.address, backend.address


def _request(model: str) -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=model)
    request.input.text = "hi"
    request.params.max_tokens = 4
    return request


async def test_a_remote_backend_call_is_a_client_span_naming_the_deployment(
    make_stack: StackFactory, spans: InMemorySpanExporter
) -> None:
    gateway, backend = await _split(make_stack, ScriptedEngine(("scripted/echo",)))
    spans.clear()
    async with grpc.aio.insecure_channel(gateway) as channel:
        reply = await gateway_pb2_grpc.GatewayServiceStub(channel).Generate(
            _request("scripted/echo")
        )
    assert reply.text == "hello world"
    (client,) = (
        s
        for s in spans.get_finished_spans()
        if s.name == "modelyard.v1.BackendService/InferStream" and s.kind == SpanKind.CLIENT
    )
    assert dict(client.attributes or {}) == {
        "rpc.system": "grpc",
        "modelyard.backend": "scripted",
        "server.address": backend,
        "modelyard.model": "scripted/echo",
        "modelyard.in_process": False,
    }
    # The backend's server span is a child of it: the trace context travelled.
    server = next(
        s
        for s in spans.get_finished_spans()
        if s.name == "modelyard.v1.BackendService/InferStream" and s.kind == SpanKind.SERVER
    )
    assert server.parent is not None and server.parent.span_id == client.context.span_id


async def test_a_failed_remote_call_marks_its_span_with_the_error(
    make_stack: StackFactory, spans: InMemorySpanExporter
) -> None:
    engine = ScriptedEngine(("scripted/echo",), fail_with=BackendUnavailable("upstream down"))
    gateway, backend = await _split(make_stack, engine)
    spans.clear()
    async with grpc.aio.insecure_channel(gateway) as channel:
        with pytest.raises(grpc.aio.AioRpcError):
            await gateway_pb2_grpc.GatewayServiceStub(channel).Generate(_request("scripted/echo"))
    (client,) = (s for s in spans.get_finished_spans() if s.kind == SpanKind.CLIENT)
    assert client.status.status_code == StatusCode.ERROR
    # The gateway's own status, scrubbed and capped as the wire has it: the exception
    # leaving the span no longer overwrites it with its class and raw message.
    assert client.status.description == (
        f"backend 'scripted' at {backend} is unavailable: upstream down"
    )
    assert [e.name for e in client.events] == []  # no exception event with the raw text


async def test_a_chunk_above_grpcs_default_limit_reaches_the_gateway(
    make_stack: StackFactory,
) -> None:
    gateway, _ = await _split(make_stack, ScriptedEngine(("scripted/big",), pieces=("x" * BIG,)))
    options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    async with grpc.aio.insecure_channel(gateway, options=options) as channel:
        reply = await gateway_pb2_grpc.GatewayServiceStub(channel).Generate(
            _request("scripted/big")
        )
    assert len(reply.text) == BIG
