"""One trace across gateway and backend: W3C context travels in gRPC metadata."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from conftest import GEMMA_ID, StackFactory
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from modelyard.telemetry import configure_tracing
from modelyard_client.v1 import gateway_pb2, gateway_pb2_grpc


async def test_gateway_and_local_backend_spans_share_one_trace(
    make_stack: StackFactory,
    models_dir: Path,
    spans: InMemorySpanExporter,
) -> None:
    # Gateway and backend as two servers, as in the split deployment.
    front = await make_stack(roles=("registry", "gateway"))
    await make_stack(
        roles=("backend-local",), registry_address=front.address, models_dir=models_dir
    )
    spans.clear()
    request = gateway_pb2.GenerateRequest(model=GEMMA_ID)
    request.input.text = "Once upon a time"
    request.params.max_tokens = 4
    async with grpc.aio.insecure_channel(front.address) as channel:
        chunks = [
            c async for c in gateway_pb2_grpc.GatewayServiceStub(channel).GenerateStream(request)
        ]
    assert chunks[-1].finish_reason
    finished = spans.get_finished_spans()
    by_name = {s.name: s for s in finished}
    gateway = by_name["modelyard.v1.GatewayService/GenerateStream"]
    client = by_name["modelyard.v1.BackendService/InferStream"]
    backend = next(
        s
        for s in finished
        if s.name == "modelyard.v1.BackendService/InferStream" and s.kind == SpanKind.SERVER
    )
    assert gateway.kind == SpanKind.SERVER
    trace_ids = {gateway.context.trace_id, client.context.trace_id, backend.context.trace_id}
    assert len(trace_ids) == 1 and gateway.context.trace_id != 0
    assert backend.parent is not None and backend.parent.span_id in {
        s.context.span_id for s in finished if s.kind == SpanKind.CLIENT
    }


def test_exporter_is_chosen_by_otel_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin-nope")
    with pytest.raises(ValueError, match="OTEL_TRACES_EXPORTER='zipkin-nope' is not supported"):
        configure_tracing("modelyard-test")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert configure_tracing("modelyard-test") is None


async def test_in_process_backend_call_stays_in_the_trace(
    make_stack: StackFactory,
    spans: InMemorySpanExporter,
) -> None:
    from support.scripted_engine import ScriptedEngine

    stack = await make_stack(roles=("registry", "gateway"), engines=[ScriptedEngine()])
    spans.clear()
    request = gateway_pb2.GenerateRequest(model="scripted/echo")
    request.input.text = "hi"
    async with grpc.aio.insecure_channel(stack.address) as channel:
        reply = await gateway_pb2_grpc.GatewayServiceStub(channel).Generate(request)
    assert reply.text == "hello world"
    finished = spans.get_finished_spans()
    gateway = next(s for s in finished if s.name.endswith("GatewayService/Generate"))
    backend = next(s for s in finished if s.name.endswith("BackendService/InferStream"))
    assert backend.kind == SpanKind.INTERNAL
    assert backend.attributes and backend.attributes["modelyard.in_process"] is True
    assert backend.context.trace_id == gateway.context.trace_id
    assert not any(s.kind == SpanKind.CLIENT for s in finished)  # no loopback gRPC hop
