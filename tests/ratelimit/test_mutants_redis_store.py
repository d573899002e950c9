"""More behaviours of the limiter that mutation testing found unchecked (docs/testing.md).

The Redis store's URL redaction, policy check, connection pool, reconnect, retry clock and
log lines; the caller's key; the local store's all-or-nothing rule, levels and refunds. A
store's clock is replaced (its module's `time`) where a test needs an exact instant.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from support.redis_server import RedisServer

from modelyard.ratelimit import local, redis_store
from modelyard.ratelimit.caller import api_key_from_metadata
from modelyard.ratelimit.local import LocalBucketStore
from modelyard.ratelimit.plan import Bucket, Demand, Scope, Shortfall
from modelyard.ratelimit.redis_store import RedisBucketStore, redacted
from modelyard_client.errors import InvalidRequest

LOGGER = "modelyard.ratelimit.redis_store"
PREFIX = "test-mutants:"


def bucket(per_minute: float = 60.0, model: str = "m") -> Bucket:
    return Bucket(Scope.model(model), "requests", per_minute)


class Clock:
    """A monotonic clock that moves only when told."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def redis_clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The Redis store's clock (its retry interval and outage length), at 1000 s."""
    clock = Clock(1000.0)
    monkeypatch.setattr(redis_store, "time", SimpleNamespace(monotonic=clock))
    return clock


@pytest.fixture
def local_clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The local store's clock, far ahead of the native clock's process-relative seconds."""
    clock = Clock(1e6)
    monkeypatch.setattr(local, "time", SimpleNamespace(monotonic=clock))
    return clock


# --- redacted -------------------------------------------------------------------------


def test_a_url_without_a_host_is_redacted_to_localhost() -> None:
    assert redacted("redis://:secret@/0") == "redis://localhost/0"


def test_a_url_without_a_port_is_redacted_without_one() -> None:
    assert redacted("redis://user:secret@cache.internal/2") == "redis://cache.internal/2"
    assert redacted("rediss://:secret@cache.internal:6380/1") == "rediss://cache.internal:6380/1"


# --- RedisBucketStore.__init__ ----------------------------------------------------------


async def test_an_unknown_failure_policy_is_refused_naming_both_policies() -> None:
    with pytest.raises(InvalidRequest) as caught:
        RedisBucketStore("redis://127.0.0.1:9/0", policy="fail_sometimes")  # type: ignore[arg-type]
    assert str(caught.value) == (
        "policy must be one of fail_open, fail_closed, got 'fail_sometimes'"
    )


async def test_no_limit_inside_the_redis_client_ends_a_decision_before_its_deadline() -> None:
    # The pool waits for a connection, and each connection connects and reads, at most as long
    # as the decision's deadline (`_run`'s timeout bounds all of them). redis-py's own defaults
    # (a 20 s pool wait, 5 s socket timeouts) would end a longer decision early, with another
    # error; reaching them by behaviour would take a test of 20 s, so this reads them.
    store = RedisBucketStore("redis://127.0.0.1:9/0", timeout_s=30.0)
    try:
        pool: Any = store._pool
        connection: Any = pool.make_connection()
        assert pool.timeout is None or pool.timeout >= 30.0
        assert connection.socket_timeout is None or connection.socket_timeout >= 30.0
        assert connection.socket_connect_timeout >= 30.0
        # One immediate retry, no more: a connection that died with a restart is replaced
        # once (test_a_connection_lost_with_a_redis_restart_is_replaced_without_an_outage);
        # a second failure in a row is an outage.
        assert connection.retry.get_retries() == 1
    finally:
        await store.close()


async def _hold(store: RedisBucketStore, count: int) -> list[Any]:
    """Take `count` connections out of the store's pool (connected), and keep them."""
    pool: Any = store._pool

    async def take_all() -> list[Any]:
        return [await pool.get_connection() for _ in range(count)]

    held: list[Any] = await asyncio.wait_for(take_all(), 30.0)
    return held


async def _release(store: RedisBucketStore, held: list[Any]) -> None:
    pool: Any = store._pool
    for connection in held:
        await pool.release(connection)


async def test_by_default_a_decision_beyond_64_connections_waits_and_fails_open(
    redis_url: str,
) -> None:
    store = RedisBucketStore(redis_url, timeout_s=1.0, key_prefix=PREFIX)
    try:
        held = await _hold(store, 64)
        try:
            # Every connection is busy: the 65th decision waits until its deadline.
            outcome = await asyncio.wait_for(store.take([Demand(bucket(), 1.0)]), 30.0)
            assert outcome.ledger is store.fallback
            assert not store.reachable
        finally:
            await _release(store, held)
    finally:
        await store.close()


async def test_waiting_for_a_pooled_connection_counts_against_the_deadline(
    redis_url: str,
) -> None:
    store = RedisBucketStore(
        redis_url, timeout_s=1.0, retry_interval_s=0.05, max_connections=1, key_prefix=PREFIX
    )
    try:
        held = await _hold(store, 1)
        try:
            outcome = await asyncio.wait_for(store.take([Demand(bucket(), 1.0)]), 30.0)
            assert outcome.ledger is store.fallback
            assert not store.reachable
        finally:
            await _release(store, held)
        # With the connection back (and the retry interval passed), Redis answers: the one
        # connection was the only obstacle.
        await asyncio.sleep(0.06)
        assert (await store.take([Demand(bucket(), 1.0)])).ledger is store
    finally:
        await store.close()


async def test_a_connection_lost_with_a_redis_restart_is_replaced_without_an_outage(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    store = RedisBucketStore(own_redis.url, timeout_s=2.0)
    try:
        assert (await store.take([Demand(bucket(), 1.0)])).ledger is store
        own_redis.stop()
        own_redis.start()
        # The pooled connection died with the old server; its one retry reconnects.
        assert (await store.take([Demand(bucket(), 1.0)])).ledger is store
        assert store.reachable
    finally:
        await store.close()
    assert caplog.records == []


class DroppingProxy:
    """A TCP proxy in front of Redis that drops the connection instead of passing on the next
    `drops` EVALSHA commands (a decision's script call lost with its connection)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.drops = 0
        self.dropped = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        back = asyncio.create_task(self._pump(up_r, client_w))
        seen = b""  # the last bytes passed on, should a command name straddle two reads
        try:
            while chunk := await client_r.read(65536):
                if self.drops and b"EVALSHA" in (seen + chunk).upper():
                    self.drops -= 1
                    self.dropped += 1
                    break
                up_w.write(chunk)
                await up_w.drain()
                seen = chunk[-6:]
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            back.cancel()
            for writer in (client_w, up_w):
                writer.close()
            self._tasks.discard(task)

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass


async def test_a_lost_script_call_is_retried_once_and_a_second_loss_is_an_outage(
    redis_server: RedisServer, redis_url: str
) -> None:
    proxy = DroppingProxy(redis_server.port)
    await proxy.start()
    store = RedisBucketStore(proxy.url, timeout_s=2.0, retry_interval_s=60.0, key_prefix=PREFIX)
    try:
        assert (await store.take([Demand(bucket(), 1.0)])).ledger is store
        proxy.drops = 1
        assert (await store.take([Demand(bucket(), 1.0)])).ledger is store
        assert proxy.dropped == 1
        proxy.drops = 2
        assert (await store.take([Demand(bucket(), 1.0)])).ledger is store.fallback
        assert proxy.dropped == 3
        assert not store.reachable
    finally:
        await store.close()
        await proxy.close()


# --- take, _came_back, give_back ----------------------------------------------------------


async def _go_down(store: RedisBucketStore, server: RedisServer) -> None:
    """One decision while `server` is stopped (an outage); then start it again."""
    server.stop()
    assert (await store.take([Demand(bucket(), 1.0)])).ledger is store.fallback
    server.start()


async def test_redis_is_tried_again_as_soon_as_the_retry_interval_has_passed(
    own_redis: RedisServer, redis_clock: Clock
) -> None:
    store = RedisBucketStore(own_redis.url, timeout_s=2.0, retry_interval_s=10.0)
    try:
        await _go_down(store, own_redis)
        redis_clock.now = 1009.5
        assert (await store.take([Demand(bucket(), 1.0)])).ledger is store.fallback
        redis_clock.now = 1010.0  # exactly the failure's time + the retry interval
        assert (await store.take([Demand(bucket(), 1.0)])).ledger is store
        assert store.reachable
    finally:
        await store.close()


async def test_the_recovery_log_gives_how_long_the_outage_lasted(
    own_redis: RedisServer, redis_clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    store = RedisBucketStore(own_redis.url, timeout_s=2.0, retry_interval_s=1.0)
    try:
        await _go_down(store, own_redis)
        redis_clock.now = 1003.5
        assert (await store.take([Demand(bucket(), 1.0)])).ledger is store
    finally:
        await store.close()
    assert caplog.records[-1].getMessage() == (
        f"rate-limit store Redis at {store.url} answers again after 3.5s; limits are shared again"
    )


async def test_a_refund_that_finds_redis_down_logs_the_outage_with_its_cause(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    store = RedisBucketStore(own_redis.url, timeout_s=2.0)
    try:
        assert (await store.take([Demand(bucket(), 1.0)])).ledger is store
        own_redis.stop()
        await store.give_back([Demand(bucket(), 1.0)])
        assert not store.reachable
    finally:
        await store.close()
    (record,) = caplog.records
    message = record.getMessage()
    assert message.startswith(
        f"rate-limit store Redis at {store.url} is unreachable (ConnectionError: "
    )
    assert message.endswith("); answering from per-replica local limits until it answers")


# --- _shortfalls ------------------------------------------------------------------------


@pytest.fixture
def seeded(redis_url: str) -> Iterator[Callable[[Bucket, float], None]]:
    """Set a bucket's level in Redis, measured in the future (so it does not refill yet)."""
    client = redis.Redis.from_url(redis_url)

    def seed(spec: Bucket, level: float) -> None:
        client.hset(
            PREFIX + spec.key,
            mapping={"level": repr(level), "at": repr(time.time() + 3600.0), "cap": "60"},
        )

    yield seed
    client.close()


async def test_a_refusal_by_less_than_a_microsecond_is_a_wait_of_zero(
    redis_url: str, seeded: Callable[[Bucket, float], None]
) -> None:
    # The script reports waits to the microsecond: 1e-9 s rounds to 0, "retry now", not never.
    seeded(bucket(), 10.0)
    store = RedisBucketStore(redis_url, timeout_s=2.0, key_prefix=PREFIX)
    try:
        outcome = await store.take([Demand(bucket(), 10.000000001)])
    finally:
        await store.close()
    assert outcome.ledger is store
    assert outcome.shortfalls == (Shortfall(bucket(), 0.0),)


async def test_a_refusal_for_under_a_second_reports_its_wait(
    redis_url: str, seeded: Callable[[Bucket, float], None]
) -> None:
    seeded(bucket(), 10.0)
    store = RedisBucketStore(redis_url, timeout_s=2.0, key_prefix=PREFIX)
    try:
        outcome = await store.take([Demand(bucket(), 10.5)])
    finally:
        await store.close()
    assert outcome.shortfalls == (Shortfall(bucket(), 0.5),)


# --- api_key_from_metadata -----------------------------------------------------------------


def test_a_key_that_is_not_utf8_is_read_with_replacement_characters() -> None:
    assert api_key_from_metadata([("x-api-key", b"\xffkey")]) == "\ufffdkey"
    assert api_key_from_metadata([("authorization", b"Bearer \xfe1")]) == "\ufffd1"


def test_only_the_authorization_header_carries_a_bearer_token() -> None:
    assert api_key_from_metadata([("x-forwarded-auth", "Bearer not-mine")]) is None
    # The first bearer wins over a later one.
    assert (
        api_key_from_metadata([("authorization", "Bearer one"), ("Authorization", "Bearer two")])
        == "one"
    )


# --- LocalBucketStore ---------------------------------------------------------------------


def test_a_demand_that_can_never_fit_does_not_hide_the_other_refusals(
    local_clock: Clock,
) -> None:
    store = LocalBucketStore()
    drained = bucket(60.0, "drained")
    assert store.take_now([Demand(drained, 60.0)]) == ()
    assert store.take_now([Demand(bucket(6.0, "small"), 7.0), Demand(drained, 1.0)]) == (
        Shortfall(bucket(6.0, "small"), math.inf),
        Shortfall(drained, 1.0),
    )


def test_a_refusal_for_under_a_second_takes_nothing(local_clock: Clock) -> None:
    store = LocalBucketStore()
    assert store.take_now([Demand(bucket(60.0), 60.0)]) == ()
    # 60 per minute refills one a second: half a unit is half a second away.
    assert store.take_now([Demand(bucket(60.0), 0.5)]) == (Shortfall(bucket(60.0), 0.5),)
    assert store.take_now([Demand(bucket(60.0), 0.5)]) == (Shortfall(bucket(60.0), 0.5),)
    local_clock.now += 0.5
    assert store.take_now([Demand(bucket(60.0), 0.5)]) == ()


def test_level_without_a_time_reads_the_stores_clock(local_clock: Clock) -> None:
    store = LocalBucketStore()
    assert store.take_now([Demand(bucket(60.0), 60.0)]) == ()
    local_clock.now += 30.0
    assert store.level(bucket(60.0)) == 30.0


async def test_a_refund_is_booked_at_the_stores_clock(local_clock: Clock) -> None:
    store = LocalBucketStore()
    start = local_clock.now
    assert store.take_now([Demand(bucket(60.0), 60.0)]) == ()
    local_clock.now = start + 30.0
    await store.give_back([Demand(bucket(60.0), 10.0)])
    # The refund moved the bucket to its own time: 30 refilled + 10 back, and a bucket never
    # moves back, so reading it at an earlier instant shows the same.
    assert store.level(bucket(60.0), now=start + 10.0) == 40.0
    assert store.level(bucket(60.0), now=start + 30.0) == 40.0
