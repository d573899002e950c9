"""Fixtures for the rate-limit tests: a real Redis, gateways that use it, a gRPC caller."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis
from conftest import StackFactory
from support.grpc_trailers import trailers
from support.redis_server import RedisServer

from modelyard.assembly import Stack
from modelyard.backends.engine import Engine
from modelyard.gateway.limits import ModelLimits
from modelyard.ratelimit.config import LimiterConfig
from modelyard_client.errors import RETRY_AFTER_MS_KEY
from modelyard_client.v1 import gateway_pb2, gateway_pb2_grpc


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the session (tests that stop Redis use `own_redis`)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session Redis, emptied for this test."""
    redis_server.start()
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    return redis_server.url


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, which it may stop, freeze and restart."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


StartGateway = Callable[..., Awaitable[tuple[Stack, ModelLimits]]]


@pytest.fixture
async def start_gateway(
    make_stack: StackFactory,
) -> AsyncIterator[StartGateway]:
    """Start a registry+gateway stack hosting `engines` whose gateway uses `config`'s limiter."""

    async def start(config: LimiterConfig, *engines: Engine) -> tuple[Stack, ModelLimits]:
        stack = await make_stack(
            roles=("registry", "gateway"), engines=list(engines), limiter=config
        )
        assert stack.limits is not None
        return stack, stack.limits

    yield start  # the stack closes its limiter when it stops


@dataclass
class Answer:
    code: grpc.StatusCode
    details: str
    trailers: dict[str, Any]
    response: gateway_pb2.GenerateResponse | None = None

    @property
    def retry_after_ms(self) -> int:
        return int(self.trailers[RETRY_AFTER_MS_KEY])


async def generate(
    address: str,
    model: str = "scripted/echo",
    *,
    metadata: tuple[tuple[str, str], ...] = (),
    max_tokens: int = 8,
    text: str = "hi",
    timeout_s: float = 30.0,
) -> Answer:
    """One Generate call; its status, details and trailers whatever the outcome."""
    request = gateway_pb2.GenerateRequest(model=model)
    request.input.text = text
    request.params.max_tokens = max_tokens
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            response = await gateway_pb2_grpc.GatewayServiceStub(channel).Generate(
                request, metadata=metadata, timeout=timeout_s
            )
        except grpc.aio.AioRpcError as err:
            return Answer(err.code(), err.details() or "", trailers(err))
    return Answer(grpc.StatusCode.OK, "", {}, response)


# What the `call` fixture is: `generate`, keyword arguments and all.
GenerateCall = Callable[..., Awaitable[Answer]]


@pytest.fixture
def call() -> GenerateCall:
    """`generate` as a fixture, so test modules need not import each other."""
    return generate
