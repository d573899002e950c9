"""Per key and per team budgets through `ModelLimits`, the same in process and in Redis: who the
principal is decides which limits apply, the stricter one refuses, windows roll over at
the UTC day and month, settlements book what an answer cost, alerts fire once."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Protocol

import pytest

from modelyard.assembly.settings import limiter_settings
from modelyard.config import parse_config
from modelyard.gateway.limits import ModelLimits
from modelyard.ratelimit import LimiterConfig, QuotaConfig, Rates
from modelyard.ratelimit.local import LocalBucketStore
from modelyard.ratelimit.plan import Scope
from modelyard.ratelimit.redis_store import DEFAULT_KEY_PREFIX, RedisBucketStore
from modelyard.ratelimit.spend import SpendBudget, SpendConfig, SpendLimits, Window
from modelyard.security.principal import OPEN, Principal, running_as
from modelyard_client.errors import BudgetExceeded, ConfigError, QuotaExceeded
from modelyard_client.v1 import common_pb2

# $0.01 a request and $1 per million input and $2 per million output tokens.
PRICES = common_pb2.CostProfile(
    usd_per_request=0.01, usd_per_input_token=1e-6, usd_per_output_token=2e-6
)
ALICE = Principal(key_id="k-alice", team="research")
BOB = Principal(key_id="k-bob", team="research", daily_budget_usd=1.0)  # his own, over the default


def model(rpm: float = 0) -> common_pb2.ModelEntry:
    return common_pb2.ModelEntry(
        id="p/m", provider="p", cost=PRICES, limits=common_pb2.RateLimits(requests_per_minute=rpm)
    )


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class LimitsFactory(Protocol):
    def __call__(
        self, spend: SpendConfig, quotas: QuotaConfig | None = None, clock: Clock | None = None
    ) -> ModelLimits: ...


@pytest.fixture(params=["local", "redis"])
async def make_limits(request: pytest.FixtureRequest) -> AsyncIterator[LimitsFactory]:
    made: list[ModelLimits] = []
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None

    def factory(
        spend: SpendConfig, quotas: QuotaConfig | None = None, clock: Clock | None = None
    ) -> ModelLimits:
        config = LimiterConfig(
            quotas=quotas or QuotaConfig(), spend=spend, redis_url=url, redis_timeout_s=5
        )
        limits = ModelLimits.from_config(config)
        limits.clock = clock or Clock(datetime(2026, 12, 1, 12, 0, tzinfo=UTC))
        made.append(limits)
        return limits

    yield factory
    for limits in made:
        await limits.close()


async def spent_usd(limits: ModelLimits, scope: Scope, window: Window = "day") -> float:
    """What the store holds for `scope`'s window at the limiter's clock, in dollars."""
    key = SpendBudget.at(scope, window, 1.0, limits.clock()).key
    if isinstance(limits.store, LocalBucketStore):
        return limits.store.spent(key) / 1e9
    assert isinstance(limits.store, RedisBucketStore)
    return int(await limits.store._client.hget(DEFAULT_KEY_PREFIX + key, "spent") or 0) / 1e9


def key_of(principal: Principal) -> Scope:
    return Scope.caller(None, principal)


async def test_the_key_budget_refuses_before_the_teams_when_it_is_stricter(
    make_limits: LimitsFactory,
) -> None:
    # Each request reserves at most 1 input + 9 output tokens: $0.010019.
    spend = SpendConfig(
        per_key=SpendLimits(daily_usd=0.03),
        per_team={"research": SpendLimits(daily_usd=0.05)},
    )
    limits = make_limits(spend)
    with running_as(ALICE):
        for _ in range(2):
            await limits.reserve(model(), 10, input_tokens=1)
        with pytest.raises(BudgetExceeded) as key_refused:
            await limits.reserve(model(), 10, input_tokens=1)
    assert (key_refused.value.scope, key_refused.value.window) == ("key:k-alice", "day")
    assert key_refused.value.spent_usd == 0.020038
    # Bob's own budget is larger, but the team's is what is left: two more, then the team.
    with running_as(BOB):
        for _ in range(2):
            await limits.reserve(model(), 10, input_tokens=1)
        with pytest.raises(BudgetExceeded) as team_refused:
            await limits.reserve(model(), 10, input_tokens=1)
    assert team_refused.value.scope == "team:research"
    assert "team 'research' has spent $0.040076 of its $0.05 daily budget" in (
        team_refused.value.message
    )
    assert await spent_usd(limits, Scope.team("research")) == 0.040076
    assert await spent_usd(limits, key_of(BOB)) == 0.020038


async def test_team_and_key_rates_both_apply_and_the_stricter_refuses(
    make_limits: LimitsFactory,
) -> None:
    quotas = QuotaConfig(
        per_key=Rates(requests_per_minute=100), per_team={"research": Rates(requests_per_minute=3)}
    )
    limits = make_limits(SpendConfig(), quotas)
    own = Principal(key_id="k-own", team="research", requests_per_minute=1)
    with running_as(own):
        await limits.reserve(model(), 1)
        with pytest.raises(QuotaExceeded) as refused:
            await limits.reserve(model(), 1)
    assert [x.label for x in refused.value.limits] == ["key 'k-own'"]
    with running_as(ALICE):  # the default of 100 for her key; the team has 2 left
        await limits.reserve(model(), 1)
        await limits.reserve(model(), 1)
        with pytest.raises(QuotaExceeded) as team_full:
            await limits.reserve(model(), 1)
    assert [(x.scope, x.per_minute) for x in team_full.value.limits] == [("team:research", 3.0)]


async def test_without_a_principal_of_its_own_the_presented_key_is_the_scope(
    make_limits: LimitsFactory,
) -> None:
    limits = make_limits(
        SpendConfig(per_key=SpendLimits(daily_usd=0.02)),
        QuotaConfig(per_team={"research": Rates(requests_per_minute=1)}),
    )
    with running_as(OPEN):
        await limits.reserve(model(), 10, "alice-key-0001", input_tokens=1)
        await limits.reserve(model(), 10, "bob-key-0002", input_tokens=1)
        with pytest.raises(BudgetExceeded) as refused:
            await limits.reserve(model(), 10, "alice-key-0001", input_tokens=1)
    assert refused.value.scope == str(Scope.api_key("alice-key-0001"))
    assert "api key '...0001' has spent $0.010019" in refused.value.message


async def test_a_settlement_books_what_the_answer_cost_exactly(make_limits: LimitsFactory) -> None:
    limits = make_limits(SpendConfig(per_key=SpendLimits(daily_usd=1.0)))
    with running_as(ALICE):
        reservation = await limits.reserve(model(), 1001, input_tokens=1)
        assert await spent_usd(limits, key_of(ALICE)) == 0.012001  # 1 in, 1000 out, the fee
        usage = common_pb2.Usage(input_tokens=0, output_tokens=7)  # no input count: the estimate
        await reservation.settle(8, reservation.cost_of(usage))
    assert await spent_usd(limits, key_of(ALICE)) == 0.010015
    with running_as(ALICE):
        own_figure = await limits.reserve(model(), 1001, input_tokens=1)
        await own_figure.settle(8, own_figure.cost_of(common_pb2.Usage(cost_usd=0.5)))
    assert await spent_usd(limits, key_of(ALICE)) == 0.510015


async def test_an_unknown_cost_keeps_the_reservation_and_nothing_spent_gives_it_all_back(
    make_limits: LimitsFactory,
) -> None:
    limits = make_limits(SpendConfig(per_key=SpendLimits(daily_usd=1.0)))
    with running_as(ALICE):
        cut = await limits.reserve(model(), 101, input_tokens=1)
        await cut.settle(101, None)
        assert await spent_usd(limits, key_of(ALICE)) == 0.010201
        unsent = await limits.reserve(model(), 101, input_tokens=1)
        await unsent.settle(0, 0.0)
        await unsent.settle(0, 0.0)  # once only
    assert await spent_usd(limits, key_of(ALICE)) == 0.010201


async def test_the_day_budget_resets_at_midnight_utc_and_the_month_on_the_first(
    make_limits: LimitsFactory,
) -> None:
    clock = Clock(datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC))
    # $0.010019 a request: one a day, two a month.
    spend = SpendConfig(per_key=SpendLimits(daily_usd=0.015, monthly_usd=0.025))
    limits = make_limits(spend, clock=clock)
    with running_as(ALICE):
        await limits.reserve(model(), 10, input_tokens=1)
        with pytest.raises(BudgetExceeded) as today:
            await limits.reserve(model(), 10, input_tokens=1)
        assert (today.value.window, today.value.resets_at) == ("day", "2027-01-01T00:00:00Z")
        assert today.value.retry_after_s == 1.0
        clock.now = datetime(2027, 1, 1, 0, 0, tzinfo=UTC)  # a new day and a new month
        await limits.reserve(model(), 10, input_tokens=1)
        clock.now = datetime(2027, 1, 2, 0, 0, tzinfo=UTC)  # a new day only
        await limits.reserve(model(), 10, input_tokens=1)
        clock.now = datetime(2027, 1, 3, 8, 0, tzinfo=UTC)
        with pytest.raises(BudgetExceeded) as month:
            await limits.reserve(model(), 10, input_tokens=1)
    assert (month.value.window, month.value.resets_at) == ("month", "2027-02-01T00:00:00Z")
    assert "resets on 2027-02-01 at 00:00 UTC" in month.value.message
    assert await spent_usd(limits, key_of(ALICE), "month") == 0.020038


async def test_each_alert_fraction_is_reported_once_with_a_warning(
    make_limits: LimitsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    spend = SpendConfig(
        per_team={"research": SpendLimits(daily_usd=0.04)}, alert_at=(0.5, 0.75, 1.0)
    )
    limits = make_limits(spend)
    caplog.set_level(logging.WARNING, "modelyard.ratelimit.spend")
    with running_as(ALICE):
        for _ in range(4):  # $0.01 each (no tokens): 25%, 50%, 75%, 100%
            await limits.reserve(model(), 0)
        with pytest.raises(BudgetExceeded):
            await limits.reserve(model(), 0)
    assert [(a.scope, a.fraction, a.spent_usd) for a in limits.alerts.recent] == [
        ("team:research", 0.5, 0.02),
        ("team:research", 0.75, 0.03),
        ("team:research", 1.0, 0.04),
    ]
    assert [r.getMessage() for r in caplog.records] == [
        "budget alert: team 'research' has reached 50% of its $0.04 daily budget for "
        "2026-12-01 (UTC): $0.02 spent or held by calls in flight",
        "budget alert: team 'research' has reached 75% of its $0.04 daily budget for "
        "2026-12-01 (UTC): $0.03 spent or held by calls in flight",
        "budget alert: team 'research' has reached 100% of its $0.04 daily budget for "
        "2026-12-01 (UTC): $0.04 spent or held by calls in flight",
    ]


async def test_no_budget_and_no_rate_reserves_nothing(make_limits: LimitsFactory) -> None:
    limits = make_limits(SpendConfig(per_team={"other": SpendLimits(daily_usd=1.0)}))
    with running_as(ALICE):
        reservation = await limits.reserve(model(), 10)
    assert reservation.ledger is None and reservation.charges == ()


async def test_a_free_models_calls_cost_nothing_against_a_budget(
    make_limits: LimitsFactory,
) -> None:
    limits = make_limits(SpendConfig(per_key=SpendLimits(daily_usd=0.01)))
    free = common_pb2.ModelEntry(id="local/free", provider="local")
    with running_as(ALICE):
        for _ in range(5):
            await limits.reserve(free, 1000, input_tokens=10)
    assert await spent_usd(limits, key_of(ALICE)) == 0.0


def test_the_files_budgets_become_the_limiters_team_rates_and_spend() -> None:
    config = parse_config(
        """
model_system:
  rate_limits: {per_key: {requests_per_minute: 60}}
  security:
    budgets:
      teams:
        research: {requests_per_minute: 120, daily_usd: 10, monthly_usd: 200}
        ops: {tokens_per_minute: 5000}
      per_key: {daily_usd: 2}
      alert_at: [0.9]
"""
    )
    limiter = limiter_settings(config, {})
    assert limiter.quotas.per_key == Rates(requests_per_minute=60)
    assert limiter.quotas.per_team == {
        "research": Rates(requests_per_minute=120),
        "ops": Rates(tokens_per_minute=5000),
    }
    assert limiter.spend == SpendConfig(
        per_key=SpendLimits(daily_usd=2.0),
        per_team={"research": SpendLimits(daily_usd=10.0, monthly_usd=200.0)},
        alert_at=(0.9,),
    )


def test_a_bad_budget_in_the_file_is_refused_naming_its_key() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            """
model_system:
  security:
    budgets:
      teams: {research: {daily_usd: 0}}
      alert_at: [0.8, 0.5]
"""
        )
    assert "model_system.security.budgets.teams.research.daily_usd: must be > 0" in str(
        caught.value
    )
    with pytest.raises(ConfigError) as unordered:
        parse_config("model_system:\n  security:\n    budgets:\n      alert_at: [0.8, 0.5]\n")
    assert "model_system.security.budgets.alert_at: must be increasing" in str(unordered.value)
