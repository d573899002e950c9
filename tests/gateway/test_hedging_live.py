"""Hedged requests through a running gateway: a model slow to start loses to its hedge.

The fake OpenAI upstream answers ``model-a`` only after `SLOW_S` and
``model-b`` at once; ``model-a``'s profile sets `hedge_delay_ms`, and the
request names ``model-b`` as its fallback.
"""

from __future__ import annotations

import time

import grpc
from backends.openai_compat.openai_fake import FakeUpstream
from conftest import StackFactory

from modelyard.assembly import Stack
from modelyard.config import parse_config
from modelyard_client.v1 import gateway_pb2, gateway_pb2_grpc

A, B = "custom/model-a", "custom/model-b"
SLOW_S = 2.0


async def _stack(make_stack: StackFactory, upstream: FakeUpstream, profile: str) -> Stack:
    config = parse_config(
        f"""
model_system:
  backends:
    custom:
      kind: openai_compat
      endpoint: "{upstream.url}"
      model_profiles: {{model-a: {profile}}}
"""
    )
    return await make_stack(roles=("registry", "gateway", "backend-openai-compat"), config=config)


async def _stream(stack: Stack) -> tuple[list[gateway_pb2.GenerateChunk], float]:
    request = gateway_pb2.GenerateRequest(model=A, fallback_models=[B])
    request.input.text = "hi"
    started = time.monotonic()
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        chunks = [c async for c in stub.GenerateStream(request, timeout=10)]
    return chunks, time.monotonic() - started


async def test_a_model_slow_to_start_is_hedged_and_the_hedge_answers(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    upstream.delays_s["model-a"] = SLOW_S
    stack = await _stack(make_stack, upstream, "{hedge_delay_ms: 100}")
    chunks, took = await _stream(stack)
    assert chunks[0].model_id == B
    assert "".join(c.text for c in chunks) == "model-b;" * 3
    assert chunks[-1].finish_reason
    assert took < SLOW_S / 2  # the hedge's time, not model-a's
    assert [body["model"] for body in upstream.bodies] == ["model-a", "model-b"]


async def test_a_model_that_starts_in_time_is_not_hedged(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    stack = await _stack(make_stack, upstream, "{hedge_delay_ms: 1000}")
    chunks, _ = await _stream(stack)
    assert chunks[0].model_id == A
    assert [body["model"] for body in upstream.bodies] == ["model-a"]


async def test_without_a_hedge_delay_the_slow_model_is_waited_for(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    upstream.delays_s["model-a"] = 0.5
    stack = await _stack(make_stack, upstream, "{latency_p50_ms: 10}")
    chunks, took = await _stream(stack)
    assert chunks[0].model_id == A
    assert took >= 0.5
    assert [body["model"] for body in upstream.bodies] == ["model-a"]
