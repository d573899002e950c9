"""An upstream that echoes the request's headers in its error leaks no key to the caller.

Before scrubbing, `upstream.raise_for_status` put the upstream's message in the
error verbatim: the provider key (``Authorization: Bearer ...``) reached the
caller's status message and the span's status description. Here a real stack
calls a real echoing upstream (`echo_upstream.EchoUpstream`).
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import AsyncIterator

import grpc
import pytest
from conftest import StackFactory
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from security.echo_upstream import EchoUpstream
from support.grpc_trailers import trailers
from support.scripted_engine import ScriptedEngine

from modelyard.config import parse_config
from modelyard_client.errors import ProviderError
from modelyard_client.scrub import MARKER, register_secret
from modelyard_client.v1 import gateway_pb2, gateway_pb2_grpc

ROLES = ("registry", "gateway", "backend-openai-compat")


def _config(url: str) -> str:
    return f"""
model_system:
  backends:
    echo:
      kind: openai_compat
      endpoint: "{url}"
      api_key: "${{ECHO_API_KEY}}"
      max_retries: 0
"""


@pytest.fixture
async def echo() -> AsyncIterator[EchoUpstream]:
    fake = EchoUpstream()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.mark.parametrize("model", ["status-400", "status-401", "status-403", "status-500"])
async def test_an_echoed_authorization_header_reaches_neither_the_caller_nor_the_span(
    make_stack: StackFactory,
    echo: EchoUpstream,
    spans: InMemorySpanExporter,
    model: str,
) -> None:
    # Not key-shaped on purpose: only its registration as a configured key can catch it.
    provider_key = "prov" + secrets.token_hex(12)
    stack = await make_stack(
        roles=ROLES, config=parse_config(_config(echo.url), env={"ECHO_API_KEY": provider_key})
    )
    spans.clear()
    async with grpc.aio.insecure_channel(stack.address) as channel:
        request = gateway_pb2.GenerateRequest(model=f"echo/{model}")
        request.input.text = "hello"
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await gateway_pb2_grpc.GatewayServiceStub(channel).Generate(request, timeout=10)
    assert echo.keys_seen[-1] == provider_key  # the upstream did get the key, and echoed it
    details = failed.value.details() or ""
    encoded = base64.b64encode(provider_key.encode()).decode()[:16]
    for text in [details, *(str(v) for v in trailers(failed.value).values())]:
        assert provider_key not in text
        assert encoded not in text
    assert "rejected: request headers:" in details  # the upstream's message is still told
    assert f"Bearer {MARKER}" in details
    await server_spans(spans)
    descriptions = [s.status.description or "" for s in spans.get_finished_spans()]
    assert any("rejected: request headers:" in d for d in descriptions)
    assert not any(provider_key in d for d in descriptions)


async def test_an_error_nobody_scrubbed_is_scrubbed_on_the_wire_and_in_the_server_span(
    make_stack: StackFactory, spans: InMemorySpanExporter
) -> None:
    # An engine's own error (a plug-in's, say) carrying a configured key: only the wire's
    # choke point (`to_status`) and the interceptor's span status stand in the way.
    key = "engine" + secrets.token_hex(12)
    register_secret(key)
    engine = ScriptedEngine(fail_with=ProviderError(f"the SDK said: api key {key} is invalid"))
    stack = await make_stack(engines=[engine], roles=("registry", "gateway"))
    spans.clear()
    async with grpc.aio.insecure_channel(stack.address) as channel:
        request = gateway_pb2.GenerateRequest(model="scripted/echo")
        request.input.text = "hello"
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await gateway_pb2_grpc.GatewayServiceStub(channel).Generate(request, timeout=10)
    assert f"the SDK said: api key {MARKER} is invalid" in (failed.value.details() or "")
    server = await server_spans(spans)
    assert [s.status.description for s in server] == [failed.value.details()]


async def server_spans(spans: InMemorySpanExporter) -> list[ReadableSpan]:
    """The Generate calls' SERVER spans, once there is one: a span ends just after its
    status went out, so the client can read the spans before it ends."""
    server: list[ReadableSpan] = []
    for _ in range(200):
        server = [
            s for s in spans.get_finished_spans() if s.name.endswith("GatewayService/Generate")
        ]
        if server:
            break
        await asyncio.sleep(0.01)
    return server
