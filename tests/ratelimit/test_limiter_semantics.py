"""What a reservation does, the same in process, in Redis and in shared memory: scopes,
all-or-nothing, waits."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Protocol

import pytest
import redis.asyncio as aioredis

from modelyard.gateway.limits import ModelLimits, Reservation
from modelyard.ratelimit import (
    LimiterConfig,
    QuotaConfig,
    QuotaExceeded,
    QuotaNeverFits,
    Rates,
    RedisBucketStore,
    api_key_from_metadata,
)
from modelyard.ratelimit.plan import Bucket, Demand, Scope
from modelyard.ratelimit.redis_store import DEFAULT_KEY_PREFIX, redacted
from modelyard.ratelimit.spend import Charge, Crossing
from modelyard.ratelimit.store import BucketStore, Outcome
from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import common_pb2


def model(
    model_id: str = "p/m", provider: str = "p", rpm: float = 0, tpm: float = 0
) -> common_pb2.ModelEntry:
    return common_pb2.ModelEntry(
        id=model_id,
        provider=provider,
        limits=common_pb2.RateLimits(requests_per_minute=rpm, tokens_per_minute=tpm),
    )


class LimitsFactory(Protocol):
    def __call__(self, quotas: QuotaConfig | None = None) -> ModelLimits: ...


@pytest.fixture(params=["local", "redis", "shared_memory"])
async def make_limits(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[LimitsFactory]:
    """Build `ModelLimits` over in-process buckets, the session Redis or one shared-memory
    table (the test's own file, shared by every `ModelLimits` it builds)."""
    made: list[ModelLimits] = []
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    table = tmp_path / "limits" if request.param == "shared_memory" else None

    def factory(quotas: QuotaConfig | None = None) -> ModelLimits:
        config = LimiterConfig(
            quotas=quotas or QuotaConfig(), redis_url=url, redis_timeout_s=5, shared_memory=table
        )
        made.append(ModelLimits.from_config(config))
        return made[-1]

    yield factory
    for limits in made:
        await limits.close()


class CountingStore:
    """A bucket store that counts the calls it gets before passing them on."""

    def __init__(self, inner: BucketStore) -> None:
        self.inner = inner
        self.takes = self.give_backs = 0

    async def take(self, demands: Sequence[Demand]) -> Outcome:
        self.takes += 1
        return await self.inner.take(demands)

    async def give_back(self, demands: Sequence[Demand]) -> None:
        self.give_backs += 1
        await self.inner.give_back(demands)

    async def reserve(self, demands: Sequence[Demand], charges: Sequence[Charge]) -> Outcome:
        self.takes += 1
        return await self.inner.reserve(demands, charges)

    async def settle(
        self, demands: Sequence[Demand], charges: Sequence[Charge]
    ) -> tuple[Crossing, ...]:
        self.give_backs += 1
        return await self.inner.settle(demands, charges)

    async def close(self) -> None:
        await self.inner.close()


async def test_no_limits_reserve_nothing(make_limits: LimitsFactory) -> None:
    limits = make_limits()
    limits.store = store = CountingStore(limits.store)
    for _ in range(3):
        reservation = await limits.reserve(model(), 10_000, "alice")
        assert reservation == Reservation(10_000)  # no demands, nothing to give back
        await reservation.settle(0)
    assert (store.takes, store.give_backs) == (0, 0)  # no bucket was asked (nor any Redis)


async def test_rejection_is_all_or_nothing_across_scopes(make_limits: LimitsFactory) -> None:
    limits = make_limits(QuotaConfig(per_key=Rates(requests_per_minute=1)))
    m = model(rpm=3)
    await limits.reserve(m, 1, "alice")
    with pytest.raises(QuotaExceeded) as refused:
        await limits.reserve(m, 1, "alice")
    assert [x.scope_kind for x in refused.value.limits] == ["key"]
    # alice's refused request took nothing from the model: two more fit, then the model refuses.
    await limits.reserve(m, 1, "bob")
    await limits.reserve(m, 1, "carol")
    with pytest.raises(QuotaExceeded) as full:
        await limits.reserve(m, 1, "dave")
    assert "model 'p/m' requests_per_minute=3" in full.value.message


async def test_retry_after_is_the_longest_wait_and_names_every_refusing_limit(
    make_limits: LimitsFactory,
) -> None:
    limits = make_limits(QuotaConfig(per_key=Rates(tokens_per_minute=60)))  # 1 token/s
    m = model(rpm=1)  # one request per 60 s
    await limits.reserve(m, 50, "alice")
    with pytest.raises(QuotaExceeded) as refused:
        await limits.reserve(m, 30, "alice")  # the key lacks ~20 tokens: ~20 s
    waits = {x.scope_kind: x.wait_s for x in refused.value.limits}
    assert 15 < waits["key"] <= 20
    assert 55 < waits["model"] <= 60
    assert refused.value.retry_after_s == max(waits.values())
    message = refused.value.message
    assert "model 'p/m' requests_per_minute=1" in message
    assert "api key '...lice' tokens_per_minute=60" in message
    assert "alice" not in message.replace("...lice", "")  # the key itself is never shown
    assert "retry after" in message


async def test_retry_after_is_accurate(make_limits: LimitsFactory) -> None:
    limits = make_limits()
    m = model(tpm=600)  # 10 tokens/s
    await limits.reserve(m, 600)
    with pytest.raises(QuotaExceeded) as refused:
        await limits.reserve(m, 20)
    wait = refused.value.retry_after_s
    assert 0 < wait <= 2.0  # 2 s less the time since the bucket emptied
    await asyncio.sleep(wait + 0.02)
    await limits.reserve(m, 20)  # admitted once the announced wait has passed


async def test_api_keys_have_separate_budgets_and_anonymous_is_one(
    make_limits: LimitsFactory,
) -> None:
    limits = make_limits(QuotaConfig(per_key=Rates(requests_per_minute=2)))
    m = model()
    for key in ("alice", "alice", "bob", "bob", None, ""):
        await limits.reserve(m, 1, key)
    for key in ("alice", "bob", None):
        with pytest.raises(QuotaExceeded) as refused:
            await limits.reserve(m, 1, key)
        assert refused.value.limits[0].scope_kind == "key"
    assert "api key 'anonymous'" in refused.value.message


async def test_provider_budget_is_shared_by_its_models(make_limits: LimitsFactory) -> None:
    limits = make_limits(QuotaConfig(per_provider={"acme": Rates(requests_per_minute=3)}))
    a, b, other = model("acme/a", "acme"), model("acme/b", "acme"), model("zeta/c", "zeta")
    for m in (a, b, a):
        await limits.reserve(m, 1)
    with pytest.raises(QuotaExceeded) as refused:
        await limits.reserve(b, 1)
    assert "provider 'acme' requests_per_minute=3" in refused.value.message
    await limits.reserve(other, 1)  # another provider is not affected


async def test_settle_refunds_unused_tokens_once(make_limits: LimitsFactory) -> None:
    limits = make_limits()
    m = model(tpm=100)
    first = await limits.reserve(m, 90)
    await first.settle(10)
    await first.settle(0)  # a second settle gives nothing more back
    second = await limits.reserve(m, 80)  # fits only thanks to the refund of 80
    with pytest.raises(QuotaExceeded):
        await limits.reserve(m, 20)
    await second.settle(100)  # used more than reserved: nothing to give back


async def test_a_request_larger_than_a_full_bucket_is_refused_without_retry(
    make_limits: LimitsFactory,
) -> None:
    limits = make_limits()
    with pytest.raises(QuotaNeverFits) as refused:
        await limits.reserve(model(tpm=100), 101)
    assert "reserves 101 tokens" in refused.value.message
    assert "model 'p/m' tokens_per_minute=100" in refused.value.message
    assert refused.value.trailing_metadata() == ()


async def test_changed_limits_start_a_full_bucket(make_limits: LimitsFactory) -> None:
    limits = make_limits()
    await limits.reserve(model(rpm=1), 1)
    with pytest.raises(QuotaExceeded):
        await limits.reserve(model(rpm=1), 1)
    await limits.reserve(model(rpm=2), 1)


async def _level(client: aioredis.Redis, key: str) -> float:
    """A bucket's level as Redis holds it."""
    level = await client.hget(key, "level")
    assert level is not None, f"no bucket {key}"
    return float(level)


async def test_refund_lands_in_redis(redis_url: str) -> None:
    limits = ModelLimits.from_config(LimiterConfig(redis_url=redis_url, redis_timeout_s=5))
    client = aioredis.Redis.from_url(redis_url)
    try:
        reservation = await limits.reserve(model(tpm=6000), 1000)  # 100 tokens/s
        key = f"{DEFAULT_KEY_PREFIX}model:p/m:tokens"
        taken = await _level(client, key)
        assert 5000 <= taken < 5100
        await reservation.settle(100)
        refunded = await _level(client, key)
        assert refunded - taken >= 900
        assert refunded <= 6000
        assert 0 < await client.pttl(key) <= 61_000  # gone once it would be full anyway
    finally:
        await client.aclose()
        await limits.close()


async def test_script_reloads_after_noscript(redis_url: str) -> None:
    limits = ModelLimits.from_config(LimiterConfig(redis_url=redis_url, redis_timeout_s=5))
    client = aioredis.Redis.from_url(redis_url)
    try:
        await limits.reserve(model(rpm=3), 1)
        await client.script_flush()  # as after a Redis restart
        await limits.reserve(model(rpm=3), 1)
        await limits.reserve(model(rpm=3), 1)
        with pytest.raises(QuotaExceeded):
            await limits.reserve(model(rpm=3), 1)
    finally:
        await client.aclose()
        await limits.close()


async def test_api_keys_never_reach_redis_in_clear(redis_url: str) -> None:
    limits = ModelLimits.from_config(
        LimiterConfig(
            quotas=QuotaConfig(per_key=Rates(requests_per_minute=5)),
            redis_url=redis_url,
            redis_timeout_s=5,
        )
    )
    client = aioredis.Redis.from_url(redis_url)
    try:
        await limits.reserve(model(), 1, "sk-secret-1234")
        keys = await client.keys("*")
        assert len(keys) == 1 and isinstance(keys[0], bytes)  # responses are not decoded
        assert keys[0].startswith(f"{DEFAULT_KEY_PREFIX}key:".encode())
        assert b"secret" not in keys[0]
    finally:
        await client.aclose()
        await limits.close()


@pytest.mark.parametrize(
    ("metadata", "key"),
    [
        ((("x-api-key", "k1"),), "k1"),
        ((("authorization", "Bearer k2"),), "k2"),
        ((("authorization", "bearer  k3 "),), "k3"),
        ((("authorization", "Bearer k2"), ("x-api-key", "k1")), "k1"),
        ((("authorization", "Basic abc"),), None),
        ((("x-api-key", b"k4"),), "k4"),
        ((), None),
        (None, None),
    ],
)
def test_api_key_comes_from_metadata(
    metadata: tuple[tuple[str, str | bytes], ...] | None, key: str | None
) -> None:
    assert api_key_from_metadata(metadata) == key


def test_config_from_env() -> None:
    config = LimiterConfig.from_env(
        {
            "MODELYARD_REDIS_URL": "redis://:pw@cache:6380/2",
            "MODELYARD_RATE_LIMIT_FAILURE_POLICY": "fail_closed",
            "MODELYARD_REDIS_TIMEOUT_S": "0.1",
            "MODELYARD_QUOTA_PER_KEY": "rpm=60, tpm=1e5",
            "MODELYARD_QUOTA_PER_PROVIDER": "openai:rpm=500,tpm=2e5; ollama:requests_per_minute=6",
        }
    )
    assert config.redis_url == "redis://:pw@cache:6380/2"
    assert (config.failure_policy, config.redis_timeout_s) == ("fail_closed", 0.1)
    assert config.quotas.per_key == Rates(60, 100_000)
    assert config.quotas.per_provider == {"openai": Rates(500, 200_000), "ollama": Rates(6, 0)}
    assert LimiterConfig.from_env({}) == LimiterConfig()
    assert redacted("redis://:pw@cache:6380/2") == "redis://cache:6380/2"
    assert redacted("unix://:pw@/run/redis.sock?db=1") == "unix:///run/redis.sock"


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"MODELYARD_RATE_LIMIT_FAILURE_POLICY": "maybe"}, "must be one of fail_open, fail_closed"),
        ({"MODELYARD_REDIS_TIMEOUT_S": "soon"}, "MODELYARD_REDIS_TIMEOUT_S: not a number"),
        ({"MODELYARD_REDIS_TIMEOUT_S": "0"}, "MODELYARD_REDIS_TIMEOUT_S: must be a number > 0"),
        ({"MODELYARD_QUOTA_PER_KEY": "rps=3"}, "expected rpm=N or tpm=N"),
        ({"MODELYARD_QUOTA_PER_KEY": "rpm=-1"}, "MODELYARD_QUOTA_PER_KEY.requests_per_minute"),
        (
            {"MODELYARD_QUOTA_PER_PROVIDER": "openai:tpm=nan"},
            "MODELYARD_QUOTA_PER_PROVIDER['openai'].tokens_per_minute: must be a finite number",
        ),
        ({"MODELYARD_QUOTA_PER_PROVIDER": "rpm=3"}, "expected provider:rpm=N,tpm=N"),
    ],
)
def test_bad_config_names_the_variable(env: dict[str, str], needle: str) -> None:
    with pytest.raises(InvalidRequest) as bad:
        LimiterConfig.from_env(env)
    assert needle in bad.value.message


def test_wait_for_a_never_refilling_shortfall_is_infinite() -> None:
    # The Lua reply's -1 ("never") becomes math.inf.
    demand = Demand(Bucket(Scope.model("m"), "tokens", 10), 11)
    (shortfall,) = RedisBucketStore._shortfalls([demand], [1, b"-1.000000"])
    assert math.isinf(shortfall.wait_s)
