"""The response cache through running stacks: a repeat answered with no upstream call.

Each stack is a registry, a gateway and an openai_compat backend in front of
the shared fake OpenAI upstream (`FakeUpstream.echo_model`: ``model-a;`` three
times, then ``stop``); `upstream.bodies` holds every chat request that reached
it. Calls go through the gateway's gRPC API. Redis is a real `redis-server` of
the test's own (`own_redis`, from the rate-limit tests' fixtures).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc
import pytest
from backends.openai_compat.openai_fake import FakeUpstream
from conftest import StackFactory
from ratelimit import conftest as ratelimit_fixtures
from support.redis_server import RedisServer

from modelyard.assembly import Stack
from modelyard.config import parse_config
from modelyard.gateway.response_cache import RedisAnswerStore
from modelyard_client.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

own_redis = ratelimit_fixtures.own_redis  # a redis-server this test may stop

ROLES = ("registry", "gateway", "backend-openai-compat")
A, B = "custom/model-a", "custom/model-b"
TEXT = "model-a;" * 3  # model-a's answer (the engine may join the upstream's pieces)


async def _stack(make_stack: StackFactory, upstream: FakeUpstream, redis_url: str = "") -> Stack:
    redis = f", redis_url: '{redis_url}'" if redis_url else ""
    config = parse_config(
        f"""
model_system:
  gateway: {{cache: {{enabled: true{redis}}}}}
  backends:
    custom: {{kind: openai_compat, endpoint: "{upstream.url}"}}
"""
    )
    return await make_stack(roles=ROLES, config=config)


def _request(model: str = A, request_id: str = "call-1") -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=model, request_id=request_id)
    request.input.text = "hi"
    request.params.max_tokens = 8
    request.params.temperature = 0
    return request


async def _stream(stack: Stack, request: gateway_pb2.GenerateRequest) -> list[Any]:
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        return [c async for c in stub.GenerateStream(request, timeout=10)]


async def _generate(
    stack: Stack, request: gateway_pb2.GenerateRequest
) -> gateway_pb2.GenerateResponse:
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        return await stub.Generate(request, timeout=10)


async def _refused(stack: Stack, request: gateway_pb2.GenerateRequest) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _generate(stack, request)
    return err.value.code()


async def test_a_repeated_stream_is_replayed_with_no_upstream_call(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    stack = await _stack(make_stack, upstream)
    first = await _stream(stack, _request())
    second = await _stream(stack, _request(request_id="call-2"))
    assert len(upstream.bodies) == 1
    assert [c.text for c in second] == [c.text for c in first]
    assert "".join(c.text for c in first) == TEXT
    assert not any(c.cached for c in first)
    assert [c.cached for c in second] == [True] + [False] * (len(first) - 1)
    assert (second[0].model_id, second[0].request_id) == (A, "call-2")
    assert second[-1].finish_reason == common_pb2.FINISH_REASON_STOP
    assert second[-1].usage.cost_usd == 0


async def test_a_repeated_generate_is_answered_with_no_upstream_call(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    stack = await _stack(make_stack, upstream)
    first = await _generate(stack, _request())
    second = await _generate(stack, _request(request_id="call-2"))
    assert len(upstream.bodies) == 1
    assert (first.cached, second.cached) == (False, True)
    assert first.text == second.text == TEXT
    assert (second.model_id, second.request_id) == (A, "call-2")
    # A unary answer is stored piece by piece: a stream replays it as the model streamed it.
    no_cache = _request()
    no_cache.no_cache = True
    streamed = await _stream(stack, no_cache)
    replayed = await _stream(stack, _request())
    assert [c.text for c in replayed] == [c.text for c in streamed]
    assert [c.cached for c in (streamed[0], replayed[0])] == [False, True]
    assert len(upstream.bodies) == 2  # the no_cache call only


async def test_a_sampled_request_goes_upstream_every_time(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    stack = await _stack(make_stack, upstream)
    request = _request()
    request.params.temperature = 0.8
    answers = [await _generate(stack, request) for _ in range(2)]
    assert [a.cached for a in answers] == [False, False]
    assert len(upstream.bodies) == 2


async def test_a_failed_answer_is_not_cached(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    stack = await _stack(make_stack, upstream)
    upstream.failure_rates["model-a"] = 1.0  # OpenAI's 500 error body, every time
    assert await _refused(stack, _request()) == grpc.StatusCode.UNAVAILABLE
    upstream.failure_rates["model-a"] = 0.0
    failed = len(upstream.bodies)  # the gateway may have retried it
    assert not (await _generate(stack, _request())).cached
    assert (await _generate(stack, _request())).cached
    assert len(upstream.bodies) == failed + 1


async def test_a_truncated_answer_is_not_cached(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    upstream.echo_model(unfinished=frozenset({"model-b"}))  # [DONE] with no finish reason
    stack = await _stack(make_stack, upstream)
    assert await _refused(stack, _request(B)) == grpc.StatusCode.ABORTED
    truncated = len(upstream.bodies)
    assert await _refused(stack, _request(B)) == grpc.StatusCode.ABORTED
    assert len(upstream.bodies) == 2 * truncated  # asked again, as often as the first time


async def test_a_second_gateway_sharing_redis_serves_the_first_ones_answer(
    make_stack: StackFactory, upstream: FakeUpstream, own_redis: RedisServer
) -> None:
    first = await _stack(make_stack, upstream, own_redis.url)
    second = await _stack(make_stack, upstream, own_redis.url)
    stored = await _stream(first, _request())
    replayed = await _stream(second, _request(request_id="call-2"))
    assert len(upstream.bodies) == 1
    assert [c.text for c in replayed] == [c.text for c in stored]
    assert "".join(c.text for c in replayed) == TEXT
    assert (stored[0].cached, replayed[0].cached) == (False, True)
    assert (await _generate(first, _request(request_id="call-3"))).cached
    assert len(upstream.bodies) == 1


async def test_calls_succeed_through_the_model_while_redis_is_down(
    make_stack: StackFactory,
    upstream: FakeUpstream,
    own_redis: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    stack = await _stack(make_stack, upstream, own_redis.url)
    await _generate(stack, _request())
    assert (await _generate(stack, _request())).cached
    own_redis.stop()
    with caplog.at_level(logging.WARNING, "modelyard.gateway.response_cache"):
        answers = [await _generate(stack, _request()) for _ in range(3)]
    assert [(a.cached, a.text) for a in answers] == [(False, TEXT)] * 3
    assert len(upstream.bodies) == 4
    down = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert len(down) == 1  # once per outage, not once per call
    assert down[0].startswith(f"response cache Redis at {own_redis.url} failed")
    # Back (empty: no persistence): tried again after the retry interval, then shared again.
    own_redis.start()
    assert stack.response_cache is not None
    store = stack.response_cache.store
    assert isinstance(store, RedisAnswerStore)
    await asyncio.sleep(store.retry_interval_s)
    assert not (await _generate(stack, _request())).cached
    assert store.reachable
    assert (await _generate(stack, _request())).cached
    assert len(upstream.bodies) == 5
