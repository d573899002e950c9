"""Spend budgets in a store, the same in process and in Redis: all or nothing with the rate
buckets, exact settlements, alerts once per window, UTC calendar windows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from modelyard.ratelimit.local import LocalBucketStore
from modelyard.ratelimit.plan import Bucket, Demand, Scope
from modelyard.ratelimit.redis_store import DEFAULT_KEY_PREFIX, RedisBucketStore
from modelyard.ratelimit.shared import SharedBucketStore
from modelyard.ratelimit.spend import (
    Charge,
    Overspend,
    SpendBudget,
    SpendConfig,
    SpendLimits,
    budget_exceeded,
    dollars,
    nano_usd,
    window_bounds,
)
from modelyard.ratelimit.store import BucketStore
from modelyard.security.principal import Principal
from modelyard_client.errors import BudgetExceeded, InvalidRequest

NOON = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
TEAM = Scope.team("research")


def budget(
    usd: float = 10.0, now: datetime = NOON, alert_at: tuple[float, ...] = ()
) -> SpendBudget:
    return SpendBudget.at(TEAM, "day", usd, now, alert_at)


@pytest.fixture(params=["local", "redis", "shared_memory"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BucketStore]:
    if request.param == "local":
        yield LocalBucketStore()
        return
    if request.param == "shared_memory":
        yield SharedBucketStore(tmp_path / "limits")
        return
    redis_store = RedisBucketStore(request.getfixturevalue("redis_url"), timeout_s=5)
    yield redis_store
    await redis_store.close()


async def spent(store: BucketStore, spend: SpendBudget) -> int:
    """The nano-dollars the store holds for `spend`'s window (read with its own client)."""
    if isinstance(store, LocalBucketStore | SharedBucketStore):
        return store.spent(spend.key)
    assert isinstance(store, RedisBucketStore)
    value = await store._client.hget(DEFAULT_KEY_PREFIX + spend.key, "spent")
    return int(value or 0)


# --- windows ------------------------------------------------------------------------------


def test_a_day_window_is_the_utc_calendar_day() -> None:
    late = datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert window_bounds("day", late) == (
        "2026-12-31",
        datetime(2026, 12, 31, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    # 01:30 in UTC+2 is still the previous UTC day.
    east = datetime(2027, 1, 1, 1, 30, tzinfo=timezone(timedelta(hours=2)))
    assert window_bounds("day", east)[0] == "2026-12-31"


def test_a_month_window_resets_on_the_first_and_december_rolls_the_year() -> None:
    assert window_bounds("month", datetime(2026, 12, 15, tzinfo=UTC)) == (
        "2026-12",
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    assert window_bounds("month", datetime(2027, 2, 28, 23, 0, tzinfo=UTC))[2] == datetime(
        2027, 3, 1, tzinfo=UTC
    )


def test_dollars_shows_cents_or_the_digits_below_them() -> None:
    assert [dollars(x) for x in (10.0, 9.97, 0.000125, 1234.5)] == [
        "$10.00",
        "$9.97",
        "$0.000125",
        "$1,234.50",
    ]


# --- all or nothing -----------------------------------------------------------------------


async def test_a_charge_within_the_budget_is_added_exactly(store: BucketStore) -> None:
    spend = budget(10.0)
    outcome = await store.reserve([], [Charge(spend, nano_usd(9.97))])
    assert outcome.admitted
    assert await spent(store, spend) == 9_970_000_000


async def test_a_charge_that_would_pass_the_budget_is_refused_with_what_is_spent(
    store: BucketStore,
) -> None:
    spend = budget(10.0)
    await store.reserve([], [Charge(spend, nano_usd(9.97))])
    refused = await store.reserve([], [Charge(spend, nano_usd(0.04))])
    assert not refused.admitted
    assert refused.overspends == (Overspend(spend, 9_970_000_000, 40_000_000),)
    # Exactly what is left still fits.
    assert (await store.reserve([], [Charge(spend, nano_usd(0.03))])).admitted
    assert await spent(store, spend) == nano_usd(10.0)


async def test_a_refused_budget_takes_nothing_from_the_rate_buckets(store: BucketStore) -> None:
    spend = budget(1.0)
    rpm = Demand(Bucket(Scope.model("m"), "requests", 2), 1)
    assert not (await store.reserve([rpm], [Charge(spend, nano_usd(2.0))])).admitted
    # Both requests of the minute are still there, and the budget holds nothing.
    assert (await store.reserve([rpm], [Charge(spend, 1)])).admitted
    assert (await store.reserve([rpm], [Charge(spend, 1)])).admitted
    assert not (await store.reserve([rpm], [Charge(spend, 1)])).admitted
    assert await spent(store, spend) == 2


async def test_a_refused_bucket_adds_nothing_to_the_budget(store: BucketStore) -> None:
    spend = budget(1.0)
    rpm = Demand(Bucket(Scope.model("m"), "requests", 1), 1)
    assert (await store.reserve([rpm], [Charge(spend, 5)])).admitted
    refused = await store.reserve([rpm], [Charge(spend, 7)])
    assert [s.bucket for s in refused.shortfalls] == [rpm.bucket]
    assert refused.overspends == ()
    assert await spent(store, spend) == 5


# --- settlement ---------------------------------------------------------------------------


async def test_a_settlement_gives_back_the_unused_part_exactly(store: BucketStore) -> None:
    spend = budget(10.0)
    reserved = nano_usd(0.012345678)
    await store.reserve([], [Charge(spend, reserved)])
    await store.settle([], [Charge(spend, nano_usd(0.000456789) - reserved)])
    assert await spent(store, spend) == 456_789


async def test_a_settlement_above_the_reservation_adds_the_difference(store: BucketStore) -> None:
    spend = budget(1.0)
    await store.reserve([], [Charge(spend, 100)])
    await store.settle([], [Charge(spend, 50)])
    assert await spent(store, spend) == 150


async def test_a_counter_lives_until_a_day_after_its_reset_on_the_limiters_clock(
    redis_url: str,
) -> None:
    # The limiter's clock, not Redis's, says when a window ends: a day window at noon
    # is kept 12 h + a day from then, whatever the date on Redis's host (this test's
    # NOON is long past there: an absolute expiry would drop the counter at once).
    store = RedisBucketStore(redis_url, timeout_s=5)
    try:
        spend = budget(10.0)
        assert spend.keep_s == 36 * 3600
        assert (await store.reserve([], [Charge(spend, 5)])).admitted
        await store.settle([], [Charge(spend, 7)])
        ttl = await store._client.ttl(DEFAULT_KEY_PREFIX + spend.key)
        assert 36 * 3600 - 5 <= ttl <= 36 * 3600
        assert await spent(store, spend) == 12
    finally:
        await store.close()


async def test_a_refund_to_a_window_not_kept_is_dropped(store: BucketStore) -> None:
    spend = budget(1.0)
    assert await store.settle([], [Charge(spend, -100)]) == ()
    assert await spent(store, spend) == 0


# --- alerts -------------------------------------------------------------------------------


async def test_each_fraction_is_reported_once_per_window(store: BucketStore) -> None:
    spend = budget(1.0, alert_at=(0.5, 0.8, 1.0))
    first = await store.reserve([], [Charge(spend, nano_usd(0.6))])
    assert [c.fraction for c in first.crossings] == [0.5]
    assert first.crossings[0].spent_nano == nano_usd(0.6)
    # Refunded below 0.5, then over it again: not reported twice.
    await store.settle([], [Charge(spend, -nano_usd(0.5))])
    assert (await store.reserve([], [Charge(spend, nano_usd(0.5))])).crossings == ()
    # One charge over two fractions reports both.
    both = await store.reserve([], [Charge(spend, nano_usd(0.4))])
    assert [c.fraction for c in both.crossings] == [0.8, 1.0]
    # The next day's window reports again.
    tomorrow = budget(1.0, datetime(2026, 12, 2, 0, 0, tzinfo=UTC), (0.5, 0.8, 1.0))
    again = await store.reserve([], [Charge(tomorrow, nano_usd(0.5))])
    assert [c.fraction for c in again.crossings] == [0.5]


async def test_a_settlement_above_the_reservation_reports_the_fraction_it_reaches(
    store: BucketStore,
) -> None:
    spend = budget(1.0, alert_at=(0.5, 1.0))
    await store.reserve([], [Charge(spend, nano_usd(0.9))])
    crossed = await store.settle([], [Charge(spend, nano_usd(0.2))])
    assert [(c.fraction, c.spent_nano) for c in crossed] == [(1.0, nano_usd(1.1))]
    # A refund reports nothing.
    assert await store.settle([], [Charge(spend, -nano_usd(0.05))]) == ()


# --- the error ----------------------------------------------------------------------------


def test_the_error_names_the_budget_its_window_and_its_reset() -> None:
    spend = budget(10.0)
    error = budget_exceeded([Overspend(spend, nano_usd(9.97), nano_usd(0.05))], NOON)
    assert isinstance(error, BudgetExceeded)
    assert error.message.startswith(
        "team 'research' has spent $9.97 of its $10.00 daily budget; resets at 00:00 UTC"
    )
    assert "may cost up to $0.05" in error.message
    assert (error.scope, error.window, error.budget_usd, error.spent_usd) == (
        "team:research",
        "day",
        10.0,
        9.97,
    )
    assert error.resets_at == "2026-12-02T00:00:00Z"
    assert error.retry_after_s == 12 * 3600


def test_of_several_refusing_budgets_the_error_is_the_one_that_resets_last() -> None:
    day = budget(10.0)
    month = SpendBudget.at(Scope("key", "k1", "key 'k1'"), "month", 100.0, NOON)
    error = budget_exceeded(
        [Overspend(day, nano_usd(10.0), 1), Overspend(month, nano_usd(100.0), 1)], NOON
    )
    assert (error.scope, error.window, error.resets_at) == (
        "key:k1",
        "month",
        "2027-01-01T00:00:00Z",
    )
    assert "key 'k1' has spent $100.00 of its $100.00 monthly budget; resets on 2027-01-01" in (
        error.message
    )
    assert "team 'research' has spent $10.00" in error.message


def test_a_request_dearer_than_the_whole_budget_is_told_so() -> None:
    error = budget_exceeded([Overspend(budget(1.0), 0, nano_usd(2.5))], NOON)
    assert "may cost up to $2.50" in error.message
    assert "more than the whole budget: lower max_tokens" in error.message


# --- configuration ------------------------------------------------------------------------


def test_a_team_and_a_key_default_make_four_budgets() -> None:
    config = SpendConfig(
        per_key=SpendLimits(daily_usd=1.0),
        per_team={"research": SpendLimits(daily_usd=10.0, monthly_usd=100.0)},
    )
    key = Scope("key", "k1", "key 'k1'")
    own = Principal(key_id="k1", team="research", monthly_budget_usd=5.0)
    budgets = config.budgets_for(key, own, NOON)
    assert [(b.scope.kind, b.window, b.budget_usd) for b in budgets] == [
        ("key", "day", 1.0),
        ("key", "month", 5.0),
        ("team", "day", 10.0),
        ("team", "month", 100.0),
    ]
    # A team without budgets adds none; an unauthenticated caller has no team.
    assert len(config.budgets_for(key, Principal(key_id="k2", team="other"), NOON)) == 1
    assert len(config.budgets_for(Scope.api_key(None), None, NOON)) == 1


def test_bad_spend_settings_are_refused_naming_each() -> None:
    with pytest.raises(InvalidRequest) as caught:
        SpendConfig(
            per_key=SpendLimits(daily_usd=0.0), per_team={"t": SpendLimits(monthly_usd=-1.0)}
        )
    assert "per_key.daily_usd: must be a finite number > 0, got 0.0" in caught.value.message
    assert "per_team['t'].monthly_usd" in caught.value.message
    with pytest.raises(InvalidRequest, match="alert_at: must be increasing"):
        SpendConfig(alert_at=(0.8, 0.5))
