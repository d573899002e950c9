"""Behaviours of the limiter that mutation testing found unchecked (docs/testing.md).

Each test names the mutants it kills; they run in process, without Redis, except
where the outage path needs an unreachable Redis address.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time

import pytest
from support.redis_server import RedisServer

from modelyard.ratelimit.config import LimiterConfig, parse_provider_rates, parse_rates
from modelyard.ratelimit.local import LocalBucketStore
from modelyard.ratelimit.plan import Bucket, Demand, Rates, Scope
from modelyard.ratelimit.redis_store import RedisBucketStore
from modelyard_client.errors import InvalidRequest, RateLimiterUnavailable

# A port nothing listens on: every call is an outage, answered at once.
UNREACHABLE = "redis://127.0.0.1:9/0"


def bucket(per_minute: float = 60.0, model: str = "m") -> Bucket:
    return Bucket(Scope.model(model), "requests", per_minute)


def test_parse_rates_splits_at_the_first_equals_sign_and_names_a_bad_number() -> None:
    # partition -> rpartition would read "rpm=6=0" as name "rpm=6".
    with pytest.raises(InvalidRequest) as caught:
        parse_rates("rpm=6=0", "MODELYARD_QUOTA_PER_KEY")
    assert str(caught.value) == ("MODELYARD_QUOTA_PER_KEY.requests_per_minute: not a number: '6=0'")


def test_parse_rates_joins_every_problem_with_a_semicolon() -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_rates("rpm=-1,tpm=nan", "quota")
    assert str(caught.value) == (
        "quota.requests_per_minute: must be a finite number >= 0, got -1.0; "
        "quota.tokens_per_minute: must be a finite number >= 0, got nan"
    )


def test_parse_provider_rates_splits_at_the_first_colon() -> None:
    assert parse_provider_rates("openai:rpm=5;ollama:tpm=7", "where") == {
        "openai": Rates(requests_per_minute=5.0),
        "ollama": Rates(tokens_per_minute=7.0),
    }
    # rpartition would take "a:b" as the provider and "rpm=1" as its rates.
    with pytest.raises(InvalidRequest) as caught:
        parse_provider_rates("a:b:rpm=1", "where")
    assert str(caught.value) == (
        "where['a']: expected rpm=N or tpm=N (comma-separated), got 'b:rpm=1'"
    )


def test_from_env_without_a_mapping_reads_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MODELYARD_QUOTA_PER_KEY", "rpm=12")
    monkeypatch.setenv("MODELYARD_RATE_LIMIT_FAILURE_POLICY", "fail_closed")
    config = LimiterConfig.from_env()
    assert config.quotas.per_key == Rates(requests_per_minute=12.0)
    assert config.failure_policy == "fail_closed"


def test_level_is_full_before_first_use_and_after_a_limit_change() -> None:
    store = LocalBucketStore()
    assert store.take_now([Demand(bucket(60.0), 1.0)]) == ()
    assert store.level(bucket(60.0), now=time.monotonic()) == pytest.approx(59.0, abs=0.01)
    # Another per_minute for the same key: the old bucket does not count.
    assert store.level(bucket(120.0)) == 120.0


def test_level_reads_the_bucket_at_the_time_given_or_now() -> None:
    store = LocalBucketStore()
    start = time.monotonic()
    store.take_now([Demand(bucket(60.0), 60.0)])
    assert store.level(bucket(60.0)) == pytest.approx(0.0, abs=0.1)
    # 60 per minute refills one a second: 30 s later, 30 are back.
    assert store.level(bucket(60.0), now=start + 30.0) == pytest.approx(30.0, abs=0.1)


async def test_give_back_refunds_only_a_bucket_built_with_the_same_limit() -> None:
    store = LocalBucketStore()
    store.take_now([Demand(bucket(60.0), 40.0)])
    await store.give_back([Demand(bucket(60.0), 30.0)])
    assert store.level(bucket(60.0)) == pytest.approx(50.0, abs=0.1)
    # A refund for a bucket never built, or built with another limit, changes nothing.
    await store.give_back([Demand(bucket(120.0), 30.0), Demand(bucket(60.0, "other"), 5.0)])
    assert store.level(bucket(60.0)) == pytest.approx(50.0, abs=0.1)
    assert store.level(bucket(60.0, "other")) == 60.0


async def test_redis_take_of_nothing_is_an_empty_outcome_from_the_store_itself() -> None:
    store = RedisBucketStore(UNREACHABLE, policy="fail_closed")
    try:
        outcome = await store.take([])
        assert outcome.shortfalls == ()
        assert outcome.ledger is store
        assert store.reachable
    finally:
        await store.close()


async def test_fail_closed_refuses_with_the_whole_reason() -> None:
    store = RedisBucketStore(UNREACHABLE, policy="fail_closed", timeout_s=0.5)
    try:
        with pytest.raises(RateLimiterUnavailable) as caught:
            await store.take([Demand(bucket(), 1.0)])
        assert str(caught.value) == (
            "the rate-limit store (Redis at redis://127.0.0.1:9/0) is unreachable; requests "
            "are refused until it answers again (failure policy fail_closed)"
        )
        assert not store.reachable
    finally:
        await store.close()


async def test_an_outage_waits_the_retry_interval_before_trying_redis_again() -> None:
    store = RedisBucketStore(UNREACHABLE, timeout_s=0.5, retry_interval_s=60.0)
    try:
        before = time.monotonic()
        outcome = await store.take([Demand(bucket(), 1.0)])
        assert outcome.ledger is store.fallback
        # The next attempt is a retry interval after the failure, not before it.
        assert store._next_attempt >= before + 60.0
        # Within the interval Redis is not tried: the fallback answers.
        assert (await store.take([Demand(bucket(), 1.0)])).ledger is store.fallback
        assert store.fallback.level(bucket()) == pytest.approx(58.0, abs=0.01)
    finally:
        await store.close()


async def test_a_refund_while_redis_is_down_is_dropped() -> None:
    store = RedisBucketStore(UNREACHABLE, timeout_s=0.5, retry_interval_s=60.0)
    try:
        await store.take([Demand(bucket(), 10.0)])
        attempt = store._next_attempt
        await store.give_back([Demand(bucket(), 10.0)])
        # Not tried (the outage would have moved the next attempt), not refunded locally.
        assert store._next_attempt == attempt
        assert store.fallback.level(bucket()) == pytest.approx(50.0, abs=0.01)
    finally:
        await store.close()


def test_an_unbounded_demand_never_fits() -> None:
    store = LocalBucketStore()
    (shortfall,) = store.take_now([Demand(bucket(60.0), 61.0)])
    assert shortfall.wait_s == math.inf


async def test_an_outage_and_the_recovery_are_each_logged_once_with_the_url_and_cause(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    store = RedisBucketStore(own_redis.url, timeout_s=0.5, retry_interval_s=0.05)
    caplog.set_level(logging.WARNING, logger="modelyard.ratelimit.redis_store")
    url = store.url
    try:
        assert (await store.take([Demand(bucket(), 1.0)])).ledger is store
        own_redis.stop()
        for _ in range(2):
            await store.take([Demand(bucket(), 1.0)])
            await asyncio.sleep(0.06)
        own_redis.start()
        await store.take([Demand(bucket(), 1.0)])
        assert store.reachable
    finally:
        await store.close()
    down, back = (r.getMessage() for r in caplog.records)
    assert down.startswith(f"rate-limit store Redis at {url} is unreachable (ConnectionError: ")
    assert down.endswith("); answering from per-replica local limits until it answers")
    assert back.startswith(f"rate-limit store Redis at {url} answers again after ")
    assert back.endswith("s; limits are shared again")


async def test_fail_closed_logs_that_it_refuses(caplog: pytest.LogCaptureFixture) -> None:
    store = RedisBucketStore(UNREACHABLE, policy="fail_closed", timeout_s=0.5)
    caplog.set_level(logging.WARNING, logger="modelyard.ratelimit.redis_store")
    try:
        with pytest.raises(RateLimiterUnavailable):
            await store.take([Demand(bucket(), 1.0)])
    finally:
        await store.close()
    (record,) = caplog.records
    assert record.getMessage().startswith(
        "rate-limit store Redis at redis://127.0.0.1:9/0 is unreachable (ConnectionError: Error "
    )
    assert record.getMessage().endswith("); refusing requests until it answers")
