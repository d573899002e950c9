"""Redis gone or frozen mid-test: the failure policy answers in bounded time, never a hang."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time

import grpc
import pytest
from ratelimit.conftest import Answer, GenerateCall, StartGateway
from support.redis_server import RedisServer
from support.scripted_engine import ScriptedEngine

from modelyard.gateway.limits import ModelLimits
from modelyard.ratelimit import FailurePolicy, LimiterConfig, RedisBucketStore
from modelyard_client.v1 import common_pb2

# Generous against a loaded machine; a hang would last the whole call deadline (30 s).
ANSWER_WITHIN_S = 8.0
LOGGER = "modelyard.ratelimit.redis_store"


def _config(url: str, policy: FailurePolicy) -> LimiterConfig:
    return LimiterConfig(
        redis_url=url,
        failure_policy=policy,
        redis_timeout_s=0.25,
        redis_retry_interval_s=0.2,
    )


async def _timed(call: GenerateCall, address: str) -> Answer:
    started = time.monotonic()
    answer = await call(address)
    elapsed = time.monotonic() - started
    assert elapsed < ANSWER_WITHIN_S, f"took {elapsed:.1f}s"
    return answer


async def _until_ok(call: GenerateCall, address: str, within_s: float = 20.0) -> Answer:
    deadline = time.monotonic() + within_s
    while True:
        answer = await _timed(call, address)
        if answer.code == grpc.StatusCode.OK or time.monotonic() > deadline:
            return answer
        await asyncio.sleep(0.1)


def _redis_store(limits: ModelLimits) -> RedisBucketStore:
    assert isinstance(limits.store, RedisBucketStore)  # the config names a Redis
    return limits.store


def _messages(caplog: pytest.LogCaptureFixture, needle: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and needle in r.message]


async def test_fail_open_falls_back_to_a_local_limit_of_the_same_size_and_recovers(
    own_redis: RedisServer,
    start_gateway: StartGateway,
    call: GenerateCall,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    engine = ScriptedEngine(limits=common_pb2.RateLimits(requests_per_minute=3))
    stack, limits = await start_gateway(_config(own_redis.url, "fail_open"), engine)
    store = _redis_store(limits)
    assert (await _timed(call, stack.address)).code == grpc.StatusCode.OK  # through Redis

    own_redis.stop()
    answers = [await _timed(call, stack.address) for _ in range(4)]
    # This replica alone now admits the model's full limit, then refuses as usual.
    assert [a.code for a in answers] == [grpc.StatusCode.OK] * 3 + [
        grpc.StatusCode.RESOURCE_EXHAUSTED
    ]
    assert "model 'scripted/echo' requests_per_minute=3" in answers[-1].details
    assert not store.reachable
    (outage,) = _messages(caplog, "unreachable")  # logged once for the whole outage
    assert own_redis.url in outage and "per-replica local limits" in outage

    own_redis.start()  # empty again: its bucket is full while the local one is spent
    assert (await _until_ok(call, stack.address)).code == grpc.StatusCode.OK
    assert store.reachable
    assert len(_messages(caplog, "answers again")) == 1
    assert len(_messages(caplog, "unreachable")) == 1


async def test_fail_closed_refuses_naming_redis_and_recovers(
    own_redis: RedisServer, start_gateway: StartGateway, call: GenerateCall
) -> None:
    engine = ScriptedEngine(limits=common_pb2.RateLimits(requests_per_minute=100))
    stack, _ = await start_gateway(_config(own_redis.url, "fail_closed"), engine)
    assert (await _timed(call, stack.address)).code == grpc.StatusCode.OK

    own_redis.stop()
    for _ in range(3):
        refused = await _timed(call, stack.address)
        assert refused.code == grpc.StatusCode.UNAVAILABLE
        assert f"Redis at {own_redis.url}" in refused.details
        assert "fail_closed" in refused.details
    assert len(engine.calls) == 1  # nothing unlimited slipped through

    own_redis.start()
    assert (await _until_ok(call, stack.address)).code == grpc.StatusCode.OK
    assert len(engine.calls) == 2


@pytest.mark.parametrize("policy", ["fail_open", "fail_closed"])
async def test_a_frozen_redis_costs_a_bounded_wait_not_a_hang(
    own_redis: RedisServer, start_gateway: StartGateway, call: GenerateCall, policy: FailurePolicy
) -> None:
    engine = ScriptedEngine(limits=common_pb2.RateLimits(requests_per_minute=100))
    stack, limits = await start_gateway(_config(own_redis.url, policy), engine)
    store = _redis_store(limits)
    assert (await _timed(call, stack.address)).code == grpc.StatusCode.OK
    assert own_redis.proc is not None
    pid = own_redis.proc.pid
    # Stopped, not dead: connections open, but no answer ever comes (a network partition).
    os.kill(pid, signal.SIGSTOP)
    try:
        answers = await asyncio.gather(*(_timed(call, stack.address) for _ in range(5)))
        expected = grpc.StatusCode.OK if policy == "fail_open" else grpc.StatusCode.UNAVAILABLE
        assert [a.code for a in answers] == [expected] * 5
        assert not store.reachable
    finally:
        os.kill(pid, signal.SIGCONT)
    # fail_open answers OK from local buckets meanwhile: wait for Redis itself.
    deadline = time.monotonic() + 20
    while not store.reachable and time.monotonic() < deadline:
        await _timed(call, stack.address)
        await asyncio.sleep(0.1)
    assert store.reachable
    assert (await _timed(call, stack.address)).code == grpc.StatusCode.OK
