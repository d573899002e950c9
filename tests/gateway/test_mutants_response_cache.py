"""The response cache's stored form, its Redis store's pool, TTLs, outage handling and logs,
and what `CachedGateway` passes on to the core (killing mutmut's survivors in
`gateway.response_cache`).

The gateway tests run a real `GatewayCore` over `ScriptedEngine` models in this process;
the Redis tests a real `redis-server` (the rate-limit tests' fixtures).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from types import SimpleNamespace
from typing import Any

import pytest
import redis.asyncio as aioredis
from ratelimit import conftest as ratelimit_fixtures
from support.redis_server import RedisServer
from support.scripted_engine import ScriptedEngine

from modelyard.backends.host import BackendHost
from modelyard.gateway import response_cache
from modelyard.gateway.arm_outcomes import ArmOutcomes
from modelyard.gateway.backend_pool import BackendPool
from modelyard.gateway.catalog_view import CatalogView
from modelyard.gateway.core import GatewayCore
from modelyard.gateway.deadline import CallDeadline
from modelyard.gateway.response_cache import (
    CachedAnswer,
    CachedGateway,
    MemoryAnswerStore,
    RedisAnswerStore,
    ResponseCache,
)
from modelyard.gateway.route_view import RouteView
from modelyard_client.errors import DeadlineExceeded
from modelyard_client.v1 import common_pb2, gateway_pb2, hotswap_pb2, registry_pb2

redis_server = ratelimit_fixtures.redis_server
redis_url = ratelimit_fixtures.redis_url
own_redis = ratelimit_fixtures.own_redis

A, B = "scripted/a", "scripted/b"
ALIAS = "chat-ab"
ENDPOINT = "127.0.0.1:1"  # never dialled: the pool calls the host in this process
LOGGER = "modelyard.gateway.response_cache"
PREFIX = "test:cache:"
Change = registry_pb2.ModelChange
Sticky = hotswap_pb2.StickyBy
RouteChange = hotswap_pb2.RouteChange


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def redis_clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The Redis answer store's clock (its retry interval and outage length), at 1000 s."""
    clock = Clock(1000.0)
    monkeypatch.setattr(response_cache, "time", SimpleNamespace(monotonic=clock))
    return clock


def _answer(text: str = "hi") -> CachedAnswer:
    return CachedAnswer(A, (text, "!"), common_pb2.FINISH_REASON_STOP, 3, 2)


# ---- the stored form -------------------------------------------------------------------


def test_an_answer_is_stored_as_compact_json() -> None:
    assert _answer().to_json() == f'["{A}",["hi","!"],1,3,2]'.encode()


@pytest.mark.parametrize(
    "raw",
    [b"5", b'"abcde"', b"[1,2,3]", b'["m",["a"],1,2,3,4]', f'["{A}",[],1,3,2]'.encode()],
)
def test_a_foreign_value_is_refused_as_not_a_cached_answer(raw: bytes) -> None:
    with pytest.raises(ValueError) as refused:
        CachedAnswer.from_json(raw)
    assert str(refused.value) == "not a cached answer"


def test_counts_up_to_2_to_the_32_minus_1_are_read_and_2_to_the_32_is_refused() -> None:
    top = 2**32 - 1
    answer = CachedAnswer.from_json(f'["{A}",["hi"],1,{top},{top}]'.encode())
    assert (answer.input_tokens, answer.output_tokens) == (top, top)
    for raw in (f'["{A}",["hi"],1,{top + 1},1]', f'["{A}",["hi"],1,1,{top + 1}]'):
        with pytest.raises(ValueError, match=r"^not a cached answer$"):
            CachedAnswer.from_json(raw.encode())


# ---- the Redis store -------------------------------------------------------------------


async def _hold(store: RedisAnswerStore, count: int) -> list[Any]:
    """Take `count` connections out of the store's pool (connected), and keep them."""
    pool: Any = store._pool

    async def take_all() -> list[Any]:
        return [await pool.get_connection() for _ in range(count)]

    held: list[Any] = await asyncio.wait_for(take_all(), 10.0)
    return held


async def test_by_default_a_lookup_beyond_64_connections_waits_and_is_a_miss(
    redis_url: str,
) -> None:
    store = RedisAnswerStore(redis_url, timeout_s=0.3, key_prefix=PREFIX)
    try:
        await store.put("k", _answer(), 60)
        held = await _hold(store, 63)
        assert await store.get("k") == _answer()  # the 64th connection is there
        held += await _hold(store, 1)
        began = time.monotonic()
        assert await store.get("k") is None  # no 65th: waited out the timeout
        assert 0.25 <= time.monotonic() - began < 2.0
        assert not store.reachable
    finally:
        await store.close()


async def test_waiting_for_a_pooled_connection_counts_against_the_timeout(
    redis_url: str,
) -> None:
    store = RedisAnswerStore(redis_url, timeout_s=0.2, max_connections=1, key_prefix=PREFIX)
    try:
        await _hold(store, 1)
        began = time.monotonic()
        async with asyncio.timeout(5):
            assert await store.get("k") is None
        assert time.monotonic() - began < 1.0
    finally:
        await store.close()


async def test_the_pools_connections_time_out_as_an_operation_does_and_retry_once(
    redis_url: str,
) -> None:
    # Inside the client, no wait longer than the store's own timeout, and one immediate retry:
    # a pooled connection that died with a Redis restart is replaced; a second failure in a
    # row is an outage.
    store = RedisAnswerStore(redis_url, timeout_s=0.7)
    try:
        pool: Any = store._pool
        connection: Any = pool.make_connection()
        assert pool.timeout is None
        assert (connection.socket_timeout, connection.socket_connect_timeout) == (0.7, 0.7)
        assert connection.retry.get_retries() == 1
    finally:
        await store.close()


async def test_a_connection_lost_with_a_redis_restart_is_replaced_without_an_outage(
    own_redis: RedisServer,
) -> None:
    store = RedisAnswerStore(own_redis.url, timeout_s=2.0, key_prefix=PREFIX)
    try:
        await store.put("k", _answer(), 60)  # a pooled connection, now open
        own_redis.stop()
        own_redis.start()  # empty: no persistence
        await store.put("k", _answer("again"), 60)
        assert store.reachable
        assert await store.get("k") == _answer("again")
    finally:
        await store.close()


async def _commands_sent(url: str, during: Any) -> list[str]:
    """The commands Redis received (MONITOR) while `during()` ran, as text."""
    client = aioredis.Redis.from_url(url)
    seen: list[str] = []
    try:
        async with client.monitor() as monitor:
            await during()

            async def read() -> None:
                while True:
                    seen.append((await monitor.next_command())["command"])

            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await read()
    finally:
        await client.aclose()
    return [c for c in seen if c.startswith("SET")]


@pytest.mark.parametrize(
    ("ttl_s", "px"), [(0.0, 1), (0.0004, 1), (2.0001, 2001), (1000.0, 1000000)]
)
async def test_an_answer_is_set_with_its_ttl_in_whole_milliseconds_rounded_up_and_at_least_1(
    redis_url: str, ttl_s: float, px: int
) -> None:
    store = RedisAnswerStore(redis_url, key_prefix=PREFIX)
    try:

        async def put() -> None:
            await store.put("k", _answer(), ttl_s)

        sets = await _commands_sent(redis_url, put)
    finally:
        await store.close()
    assert sets == [f"SET {PREFIX}k {_answer().to_json().decode()} PX {px}"]


async def test_redis_is_left_alone_until_the_retry_interval_has_passed(
    own_redis: RedisServer, redis_clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    store = RedisAnswerStore(own_redis.url, timeout_s=2.0, retry_interval_s=10.0, key_prefix=PREFIX)
    try:
        own_redis.stop()
        assert await store.get("k") is None
        assert not store.reachable
        own_redis.start()
        writer = aioredis.Redis.from_url(own_redis.url)
        await writer.set(f"{PREFIX}k", _answer().to_json())  # raises if Redis is not back
        await writer.aclose()
        redis_clock.now = 1009.999
        assert await store.get("k") is None  # left alone: not asked
        assert not store.reachable
        redis_clock.now = 1010.0  # exactly the failure's time + the retry interval
        assert await store.get("k") == _answer()
        assert store.reachable
    finally:
        await store.close()
    down, back = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert re.fullmatch(
        rf"response cache Redis at {re.escape(store.url)} failed \(ConnectionError: "
        r"Error \d+ connecting to .+\); calls go to the models until it answers",
        down,
    ), down
    assert back == f"response cache Redis at {store.url} answers again after 10.0s"


async def test_entries_that_cannot_be_read_are_counted_in_one_log_line_per_10_s(
    redis_url: str, redis_clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    store = RedisAnswerStore(redis_url, key_prefix=PREFIX)
    writer = aioredis.Redis.from_url(redis_url)
    try:
        await writer.set(f"{PREFIX}k", b"not json")
        assert await store.get("k") is None
        assert await store.get("k") is None
        redis_clock.now = 1010.0
        assert await store.get("k") is None
    finally:
        await writer.aclose()
        await store.close()
    line = "response cache Redis at {}: {} entries under {} could not be read; treated as misses"
    assert [r.getMessage() for r in caplog.records if r.name == LOGGER] == [
        line.format(store.url, 1, PREFIX),
        line.format(store.url, 2, PREFIX),
    ]


# ---- the gateway -----------------------------------------------------------------------


def _split_routes() -> RouteView:
    """ALIAS carries a 50/50 split of A and B, sticky by API key."""
    split = hotswap_pb2.Split(
        id="ab-1",
        kind=hotswap_pb2.Split.KIND_AB_TEST,
        arms=[
            hotswap_pb2.ABArm(name="a", model_id=A, weight=0.5),
            hotswap_pb2.ABArm(name="b", model_id=B, weight=0.5),
        ],
        sticky_by=Sticky.STICKY_BY_API_KEY,
    )
    route = hotswap_pb2.Route(alias=ALIAS, model_id=A, split=split)
    view = RouteView()
    view.apply(RouteChange(kind=RouteChange.KIND_SYNCED, revision=0))
    view.apply(RouteChange(kind=RouteChange.KIND_UPSERTED, route=route, revision=1))
    return view


async def _gateway(
    engine: ScriptedEngine,
    cache: ResponseCache | None = None,
    outcomes: ArmOutcomes | None = None,
) -> CachedGateway:
    host = BackendHost([engine])
    await host.start()
    pool = BackendPool()
    pool.add_in_process(ENDPOINT, host)
    view = CatalogView()
    for revision, entry in enumerate(engine.models(), 1):
        entry.health = common_pb2.HEALTH_STATUS_HEALTHY
        entry.deployments.add(
            backend="scripted", endpoint=ENDPOINT, health=common_pb2.HEALTH_STATUS_HEALTHY
        )
        view.apply(Change(kind=Change.KIND_UPSERTED, revision=revision, model=entry))
    core = GatewayCore(view, pool, routes=_split_routes(), outcomes=outcomes)
    if cache is None:
        cache = ResponseCache(MemoryAnswerStore(100), ttl_s=60)
    return CachedGateway(core, cache)


def _request(model: str = A, request_id: str = "call-1", **params: Any) -> Any:
    request = gateway_pb2.GenerateRequest(model=model, request_id=request_id)
    request.input.text = "hi"
    request.params.max_tokens = 8
    for name, value in params.items():
        setattr(request.params, name, value)
    return request


async def test_by_default_only_deterministic_calls_are_cached() -> None:
    engine = ScriptedEngine((A, B))
    gateway = await _gateway(engine, ResponseCache(MemoryAnswerStore(100), ttl_s=60))
    for _ in range(2):
        assert not (await gateway.generate(_request(temperature=0.5))).cached
    assert len(engine.calls) == 2


async def test_an_opened_cache_keeps_deterministic_only_off() -> None:
    engine = ScriptedEngine((A, B))
    cache = ResponseCache.open(ttl_s=60, max_entries=10, deterministic_only=False)
    gateway = await _gateway(engine, cache)
    first = await gateway.generate(_request(temperature=0.5))
    second = await gateway.generate(_request(temperature=0.5))
    assert (first.cached, second.cached) == (False, True)
    assert len(engine.calls) == 1


@pytest.mark.parametrize("streamed", [False, True])
async def test_the_callers_deadline_reaches_the_core(streamed: bool) -> None:
    engine = ScriptedEngine((A, B), delay_s=0.3)
    gateway = await _gateway(engine)
    deadline = CallDeadline.start(0.1, 30.0)
    began = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        if streamed:
            async for _ in gateway.generate_stream(_request(temperature=0.0), deadline):
                pass
        else:
            await gateway.generate(_request(temperature=0.0), deadline)
    assert time.monotonic() - began < 0.3


@pytest.mark.parametrize("streamed", [False, True])
async def test_the_callers_api_key_draws_a_sticky_arm(streamed: bool) -> None:
    engine = ScriptedEngine((A, B))
    gateway = await _gateway(engine)
    plan = gateway.core.routes.splits[ALIAS]  # type: ignore[union-attr]
    for key in ("key-1", "key-2", "key-3", "key-4"):
        expected = plan.model_ids[plan.arm_for(key)]
        for i in range(6):
            request = _request(ALIAS, f"{key}-call-{i}")
            if streamed:
                chunks = [c async for c in gateway.generate_stream(request, None, key)]
                model_id = chunks[0].model_id
            else:
                model_id = (await gateway.generate(request, None, key)).model_id
            assert model_id == expected, (key, i)


async def _outcome(outcomes: ArmOutcomes) -> hotswap_pb2.ArmOutcome:
    sent: list[hotswap_pb2.OutcomeBatch] = []

    async def send(batch: hotswap_pb2.OutcomeBatch) -> None:
        sent.append(batch)

    outcomes.start_sending(send)
    await outcomes.close()  # sends what is waiting
    (outcome,) = [o for batch in sent for o in batch.outcomes]
    return outcome


async def test_a_streamed_split_call_reports_its_time_to_the_first_piece() -> None:
    outcomes = ArmOutcomes()
    gateway = await _gateway(ScriptedEngine((A, B), delay_s=0.05), outcomes=outcomes)
    chunks = [c async for c in gateway.generate_stream(_request(ALIAS))]
    assert chunks[-1].finish_reason == common_pb2.FINISH_REASON_STOP
    outcome = await _outcome(outcomes)
    assert 40 <= outcome.ttft_ms < outcome.latency_ms


async def test_a_whole_split_call_reports_no_time_to_the_first_piece() -> None:
    outcomes = ArmOutcomes()
    gateway = await _gateway(ScriptedEngine((A, B), delay_s=0.05), outcomes=outcomes)
    answer = await gateway.generate(_request(ALIAS))
    assert answer.finish_reason == common_pb2.FINISH_REASON_STOP
    outcome = await _outcome(outcomes)
    assert outcome.ttft_ms == 0.0
    assert outcome.latency_ms >= 150
