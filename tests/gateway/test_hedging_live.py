"""Hedged requests through a running gateway: a model slow to start loses to its hedge.

The fake OpenAI upstream answers ``model-a`` only after `SLOW_S` and
``model-b`` at once; ``model-a``'s profile sets `hedge_delay_ms`, and the
request names ``model-b`` as its fallback.
"""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from backends.openai_compat.openai_fake import FakeUpstream
from conftest import StackFactory

from modelyard.assembly import Stack
from modelyard.config import ConfigError, parse_config
from modelyard.gateway.performance import WAIT_CACHE_S
from modelyard.gateway.settings import GatewaySettings
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


async def test_a_percentile_hedge_waits_for_live_figures_then_follows_them(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    # hedge_percentile 90 and no hedge_delay_ms: no hedge until 20 first-piece waits of
    # model-a are in the window; then the delay is their 90th percentile (~30 ms here),
    # so once model-a turns slow the next call is hedged after ~30 ms, not 2 s.
    upstream.delays_s["model-a"] = 0.03
    stack = await _stack(make_stack, upstream, "{hedge_percentile: 90}")
    for _ in range(19):
        chunks, _ = await _stream(stack)
        assert chunks[0].model_id == A
    assert [body["model"] for body in upstream.bodies] == ["model-a"] * 19
    await _stream(stack)  # the 20th
    await asyncio.sleep(WAIT_CACHE_S)  # the "not enough yet" each call found, kept for 1 s
    assert stack.performance is not None
    tracker = stack.performance.tracker
    tracker_wait = tracker.first_piece_wait(A, 90)
    assert tracker_wait is not None and 0.03 <= tracker_wait < 0.5
    upstream.delays_s["model-a"] = SLOW_S
    chunks, took = await _stream(stack)
    assert chunks[0].model_id == B
    assert took < SLOW_S / 2
    assert [body["model"] for body in upstream.bodies][-2:] == ["model-a", "model-b"]


def test_hedge_percentile_reaches_the_settings_and_bad_values_are_named() -> None:
    profiles = "model_profiles: {{model-a: {{hedge_percentile: {}}}}}"
    config = parse_config(
        "model_system: {backends: {custom: {kind: openai_compat, endpoint: 'http://127.0.0.1:9', "
        + profiles.format(99.5)
        + "}}}"
    )
    settings = GatewaySettings.from_config(config)
    assert dict(settings.hedge_percentiles) == {A: 99.5}
    assert settings.hedges(A) and not settings.hedges(B)
    for bad in (0, 100.5):
        with pytest.raises(
            ConfigError, match=r"model-a\.hedge_percentile: must be between 0 and 100"
        ):
            parse_config(
                "model_system: {backends: {custom: {kind: openai_compat, "
                "endpoint: 'http://127.0.0.1:9', " + profiles.format(bad) + "}}}"
            )
