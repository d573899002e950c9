"""With tracing on, a gateway call's SERVER span carries the GenAI attributes its metrics do,
with the usage, or the error's type."""

from __future__ import annotations

import grpc
import pytest
from conftest import StackFactory
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from support.scripted_engine import ScriptedEngine

from modelyard_client.v1 import gateway_pb2, gateway_pb2_grpc


def _request(model: str) -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=model)
    request.input.chat.messages.add(role="user", content="hi")
    request.params.max_tokens = 8
    return request


async def test_the_server_span_names_the_models_the_usage_and_the_error(
    make_stack: StackFactory, spans: InMemorySpanExporter
) -> None:
    stack = await make_stack([ScriptedEngine(pieces=("a", "b"), input_tokens=5)])
    spans.clear()
    async with grpc.aio.insecure_channel(stack.address) as channel:
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        assert [c async for c in gateway.GenerateStream(_request("scripted/echo"))]
        with pytest.raises(grpc.aio.AioRpcError):
            await gateway.Generate(_request("nope/missing"))
    server = [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    by_name = {s.name: s for s in server}
    streamed = by_name["modelyard.v1.GatewayService/GenerateStream"].attributes or {}
    assert {k: v for k, v in streamed.items() if k.startswith(("gen_ai.", "error."))} == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "scripted",
        "gen_ai.request.model": "scripted/echo",
        "gen_ai.response.model": "scripted/echo",
        "gen_ai.usage.input_tokens": 5,
        "gen_ai.usage.output_tokens": 2,
    }
    refused = by_name["modelyard.v1.GatewayService/Generate"].attributes or {}
    assert refused["error.type"] == "MODEL_NOT_FOUND"
    assert refused["gen_ai.request.model"] == "_OTHER"
    assert "gen_ai.usage.input_tokens" not in refused
