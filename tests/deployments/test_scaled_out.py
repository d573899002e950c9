"""Scaled out on one machine: three gateway processes share one Redis, one catalog and
one PostgreSQL.

Processes, each `modelyard serve ROLE` on a free 127.0.0.1 port and stopped by
its PID: a real redis-server, a real PostgreSQL (tests/support/postgres_server.py),
one registry + hot-swap process, one backend-openai-compat against the fake
OpenAI upstream (tests/backends/openai_compat/openai_fake.py, OpenAI's
chat-completions wire format), and three gateways following the registry and
the hot-swap service. The registry, the hot-swap service and the gateways keep
their tables on the PostgreSQL server (`server.database_url`), not in their
data directories. A client round-robins over the gateways and shows that the
rate limit and the response cache are shared through Redis, that a catalog
change and a route change reach every gateway within a second (over the gRPC
watches, and stored in PostgreSQL), and that a conversation begun through one
gateway goes on through the others (its turns shared through PostgreSQL).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
import redis
from backends.openai_compat.openai_fake import FakeUpstream
from deployments.serve_process import ServeProcess, start_all
from support.redis_server import RedisServer, redis_server_binary

from modelyard.storage import DatabaseUrl
from modelyard_client.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    hotswap_pb2,
    hotswap_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
)

GATEWAYS = 3
RPM = 100  # rate_limits.per_key: callers without a key share the "anonymous" budget
A, B = "custom/model-a", "custom/model-b"
STARTUP_S = 60.0  # until every gateway's catalog copy holds the backend's models
PROPAGATION_S = 1.0  # a catalog or route change reaches every gateway within this

pytestmark = pytest.mark.skipif(redis_server_binary() is None, reason="needs redis-server")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@dataclass
class Deployment:
    control: ServeProcess  # registry + hot-swap
    gateways: list[ServeProcess]
    redis_url: str
    database: DatabaseUrl  # the registry's, hot-swap's and gateways' tables

    def flush_redis(self) -> None:
        """Forget every rate-limit bucket and cached answer (the startup probes made some)."""
        with redis.Redis.from_url(self.redis_url) as client:
            client.flushall()


def _request(
    model: str, text: str = "hi", deterministic: bool = False
) -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=model)
    request.input.text = text
    request.params.max_tokens = 8
    if deterministic:
        request.params.temperature = 0  # only deterministic requests are cached
    return request


async def _generate(
    address: str, request: gateway_pb2.GenerateRequest
) -> gateway_pb2.GenerateResponse | grpc.aio.AioRpcError:
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            return await gateway_pb2_grpc.GatewayServiceStub(channel).Generate(request, timeout=10)
        except grpc.aio.AioRpcError as err:
            return err


@pytest.fixture
async def deployment(
    upstream: FakeUpstream, redis_server: RedisServer, postgres_url: DatabaseUrl, tmp_path: Path
) -> AsyncIterator[Deployment]:
    server = f"  server: {{database_url: '{postgres_url.url}'}}\n"
    control_config = tmp_path / "control.yaml"
    control_config.write_text(f"model_system:\n{server}")
    shared = tmp_path / "gateway.yaml"
    # fail_closed: an over-admission must not hide behind fail_open.
    shared.write_text(
        f"model_system:\n{server}"
        f"  rate_limits: {{per_key: {{requests_per_minute: {RPM}}},"
        f" redis_url: '{redis_server.url}', on_redis_failure: fail_closed}}\n"
        f"  gateway: {{cache: {{enabled: true, redis_url: '{redis_server.url}'}}}}\n"
    )
    backend_config = tmp_path / "backend.yaml"
    backend_config.write_text(
        "model_system:\n"
        f"  backends:\n    custom: {{kind: openai_compat, endpoint: '{upstream.url}'}}\n"
    )
    control = ServeProcess(
        "control", ["registry", "hotswap", "--config", str(control_config)], tmp_path
    )
    started = [control]
    try:
        await start_all(control)
        at = ["--registry", control.address]
        backend = ServeProcess(
            "backend", ["backend-openai-compat", *at, "--config", str(backend_config)], tmp_path
        )
        gateways = [
            ServeProcess(
                f"gateway{i}",
                ["gateway", *at, "--hotswap", control.address, "--config", str(shared)],
                tmp_path,
            )
            for i in range(GATEWAYS)
        ]
        started += [backend, *gateways]
        await start_all(backend, *gateways)
        deadline = time.monotonic() + STARTUP_S
        for gateway in gateways:  # until each gateway's catalog copy holds the backend's model
            while not isinstance(
                answer := await _generate(gateway.address, _request(A)),
                gateway_pb2.GenerateResponse,
            ):
                if time.monotonic() > deadline:
                    raise AssertionError(f"{gateway.name}: {answer.details()}: {gateway.tail()}")
                await asyncio.sleep(0.1)
        made = Deployment(control, gateways, redis_server.url, postgres_url)
        made.flush_redis()
        upstream.bodies.clear()
        yield made
    finally:
        for process in reversed(started):
            await process.stop()


async def test_three_gateways_admit_at_most_one_shared_bucket_of_100_per_minute(
    deployment: Deployment,
) -> None:
    addresses = [g.address for g in deployment.gateways]
    channels = [grpc.aio.insecure_channel(a) for a in addresses]
    stubs = [gateway_pb2_grpc.GatewayServiceStub(c) for c in channels]
    codes: list[tuple[int, grpc.StatusCode]] = []
    refusals: set[str] = set()
    try:
        started = time.monotonic()
        for i in range(150):  # round-robin, one after another
            try:
                await stubs[i % GATEWAYS].Generate(_request(A), timeout=10)
                codes.append((i % GATEWAYS, grpc.StatusCode.OK))
            except grpc.aio.AioRpcError as err:
                codes.append((i % GATEWAYS, err.code()))
                refusals.add(err.details() or "")
        elapsed_s = time.monotonic() - started
    finally:
        for channel in channels:
            await channel.close(grace=None)
    counts = Counter(code for _, code in codes)
    assert set(counts) == {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, counts
    admitted = counts[grpc.StatusCode.OK]
    # The full bucket admits 100; only its refill during the calls may add more.
    refill = math.floor(RPM / 60 * elapsed_s)
    assert RPM <= admitted <= RPM + refill, (admitted, elapsed_s)
    # Each refusal names the spent budget: the anonymous caller's requests per minute.
    assert all("api key 'anonymous'" in r and "requests_per_minute" in r for r in refusals), (
        refusals
    )
    refused_by = Counter(g for g, code in codes if code == grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert len(refused_by) == GATEWAYS  # every gateway refused from the one spent budget


async def test_an_answer_cached_through_one_gateway_is_a_hit_through_the_others(
    deployment: Deployment, upstream: FakeUpstream
) -> None:
    request = _request(A, "a question worth caching", deterministic=True)
    answers = []
    for gateway in deployment.gateways:
        answer = await _generate(gateway.address, request)
        assert isinstance(answer, gateway_pb2.GenerateResponse), answer
        answers.append(answer)
    assert [a.cached for a in answers] == [False, True, True]
    assert {a.text for a in answers} == {answers[0].text}
    assert answers[0].text.startswith("model-a;")
    assert len(upstream.bodies) == 1  # the upstream answered once, for gateway 1


async def _each_gateway_within(
    deployment: Deployment, request: gateway_pb2.GenerateRequest, want_ok: bool, since: float
) -> list[float]:
    """Poll each gateway until `request` succeeds (want_ok) or is refused; seconds each took."""
    took = []
    for gateway in deployment.gateways:
        deadline = since + PROPAGATION_S + 5  # fail with what was seen, not a hang
        while True:
            answer = await _generate(gateway.address, request)
            if isinstance(answer, gateway_pb2.GenerateResponse) == want_ok:
                took.append(time.monotonic() - since)
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"{gateway.name} never changed: {answer}")
            await asyncio.sleep(0.02)
    return took


async def test_a_catalog_change_and_a_route_change_reach_every_gateway_within_a_second(
    deployment: Deployment,
) -> None:
    async with grpc.aio.insecure_channel(deployment.control.address) as channel:
        registry = registry_pb2_grpc.RegistryServiceStub(channel)
        hotswap = hotswap_pb2_grpc.HotSwapServiceStub(channel)
        # Catalog: model-b declared unhealthy on the registry is refused by all three.
        await registry.UpdateHealth(
            registry_pb2.UpdateHealthRequest(
                id=B, health=common_pb2.HEALTH_STATUS_UNHEALTHY, reason="drill"
            ),
            timeout=10,
        )
        took = await _each_gateway_within(deployment, _request(B), False, time.monotonic())
        assert max(took) <= PROPAGATION_S, took
        refused = await _generate(deployment.gateways[0].address, _request(B))
        assert isinstance(refused, grpc.aio.AioRpcError)
        assert "HEALTH_STATUS_UNHEALTHY: drill" in (refused.details() or ""), refused
        # Route: a swap creates the alias "drill"; once it has switched, all three serve it.
        started = await hotswap.Swap(
            hotswap_pb2.SwapRequest(alias="drill", target_model_id=A, grace_period_ms=1),
            timeout=10,
        )
        async with asyncio.timeout(30):
            async for status in hotswap.WatchSwap(
                hotswap_pb2.GetSwapRequest(swap_id=started.swap_id)
            ):
                assert status.phase != hotswap_pb2.SwapStatus.PHASE_FAILED, status.error
                if status.phase >= hotswap_pb2.SwapStatus.PHASE_SWITCHED:
                    break
        took = await _each_gateway_within(deployment, _request("drill"), True, time.monotonic())
        assert max(took) <= PROPAGATION_S, took


def _in_database(database: DatabaseUrl, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(database.url) as conn:
        return conn.execute(sql).fetchall()


async def test_the_registry_and_hot_swap_tables_are_on_postgresql(
    deployment: Deployment,
) -> None:
    models = _in_database(deployment.database, "SELECT id FROM registry.models ORDER BY id")
    assert (A,) in models and (B,) in models
    async with grpc.aio.insecure_channel(deployment.control.address) as channel:
        await hotswap_pb2_grpc.HotSwapServiceStub(channel).Swap(
            hotswap_pb2.SwapRequest(alias="stored", target_model_id=A, grace_period_ms=1),
            timeout=10,
        )
    deadline = time.monotonic() + 30
    while A not in _stored_routes(deployment.database).values():
        assert time.monotonic() < deadline, "the route never reached PostgreSQL"
        await asyncio.sleep(0.05)
    assert [k for k in _stored_routes(deployment.database) if "stored" in k]
    assert _sqlite_stores(deployment) == set()


def _stored_routes(database: DatabaseUrl) -> dict[str, str]:
    """The hot-swap service's routes as PostgreSQL holds them: key -> model id."""
    rows = _in_database(database, "SELECT key, route FROM hotswap.routes")
    return {str(key): hotswap_pb2.Route.FromString(blob).model_id for key, blob in rows}


def _sqlite_stores(deployment: Deployment) -> set[str]:
    """Any registry, hot-swap or conversation SQLite file in a process's data directory."""
    found = set()
    for process in (deployment.control, *deployment.gateways):
        data = Path(process.args[process.args.index("--data-dir") + 1])
        found |= {p.name for p in data.glob("*.sqlite3")} if data.exists() else set()
    return found & {"registry.sqlite3", "hotswap.sqlite3", "conversations.sqlite3"}


async def test_a_conversation_begun_through_one_gateway_goes_on_through_the_others(
    deployment: Deployment, upstream: FakeUpstream
) -> None:
    def turn(text: str) -> gateway_pb2.GenerateRequest:
        request = _request(A, text)
        request.conversation_id = "shared-conversation"
        return request

    answers = []
    for gateway, text in zip(
        deployment.gateways, ["my name is Ada", "what is my name?", "and again?"], strict=True
    ):
        answer = await _generate(gateway.address, turn(text))
        assert isinstance(answer, gateway_pb2.GenerateResponse), answer
        answers.append(answer)
    assert [a.history_turns for a in answers] == [0, 1, 2]
    # what the third gateway sent upstream: both earlier turns, each answer as it came back
    sent = [(m["role"], m["content"]) for m in upstream.bodies[-1]["messages"]]
    assert sent == [
        ("user", "my name is Ada"),
        ("assistant", answers[0].text),
        ("user", "what is my name?"),
        ("assistant", answers[1].text),
        ("user", "and again?"),
    ]
    turns = _in_database(
        deployment.database,
        "SELECT count(*) FROM conversations.turns WHERE conversation_id = 'shared-conversation'",
    )
    assert turns == [(3,)]
