"""The spend counters of both stores at the points mutation testing found unchecked
(docs/testing.md, the fourth run): a store's whole `Outcome`, several budgets refusing or
crossing alert fractions in one request, the windows a new one prunes, a refund to zero,
a charge of one nano-dollar, and a settlement of nothing.

The local store runs as it is; the Redis store against the session's real redis-server.
Budgets are tiny (100 nano-dollars) so that amounts read as counts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from modelyard.ratelimit.local import LocalBucketStore
from modelyard.ratelimit.plan import Scope
from modelyard.ratelimit.redis_store import RedisBucketStore
from modelyard.ratelimit.spend import Charge, Crossing, Overspend, SpendBudget
from modelyard.ratelimit.store import Outcome

KEY = Scope("key", "k1", "key 'k1'")
TODAY = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
YESTERDAY = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
HUNDRED_NANO_USD = 1e-7

DAY = SpendBudget.at(KEY, "day", HUNDRED_NANO_USD, TODAY)
MONTH = SpendBudget.at(KEY, "month", HUNDRED_NANO_USD, TODAY)
Store = LocalBucketStore | RedisBucketStore


@pytest.fixture(params=["local", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """Each store in turn; the Redis one on the session's redis-server, emptied."""
    if request.param == "local":
        yield LocalBucketStore()
        return
    url: str = request.getfixturevalue("redis_url")
    shared = RedisBucketStore(url, policy="fail_closed", timeout_s=5.0, key_prefix="spend-mut:")
    try:
        yield shared
    finally:
        await shared.close()


# --- the whole Outcome ----------------------------------------------------------------


async def test_an_admitted_reservation_is_no_shortfall_no_overspend_and_this_stores_ledger(
    store: Store,
) -> None:
    outcome = await store.reserve((), (Charge(DAY, 10),))
    assert outcome == Outcome((), store, (), ())


async def test_a_reservation_a_budget_refuses_names_it_with_this_store_as_ledger(
    store: Store,
) -> None:
    await store.reserve((), (Charge(DAY, 30),))
    outcome = await store.reserve((), (Charge(DAY, 80),))
    assert outcome == Outcome((), store, (Overspend(DAY, 30, 80),))


async def test_two_budgets_refusing_one_request_each_name_their_own_spend(store: Store) -> None:
    await store.reserve((), (Charge(DAY, 30), Charge(MONTH, 60)))
    outcome = await store.reserve((), (Charge(DAY, 80), Charge(MONTH, 80)))
    assert outcome.overspends == (Overspend(DAY, 30, 80), Overspend(MONTH, 60, 80))


# --- crossings of several budgets in one step ------------------------------------------


async def test_a_reservation_reports_every_budgets_crossings_in_order(store: Store) -> None:
    outcome = await store.reserve((), (Charge(DAY, 50), Charge(MONTH, 80)))
    assert outcome.crossings == (
        Crossing(DAY, 0.5, 50),
        Crossing(MONTH, 0.5, 80),
        Crossing(MONTH, 0.8, 80),
    )


async def test_a_crossing_names_the_budget_that_crossed_not_its_neighbour(store: Store) -> None:
    outcome = await store.reserve((), (Charge(DAY, 50), Charge(MONTH, 10)))
    assert outcome.crossings == (Crossing(DAY, 0.5, 50),)


async def test_a_settlement_reports_every_budgets_crossings(store: Store) -> None:
    await store.reserve((), (Charge(DAY, 10), Charge(MONTH, 10)))
    found = await store.settle((), (Charge(DAY, 50), Charge(MONTH, 70)))
    assert found == (Crossing(DAY, 0.5, 60), Crossing(MONTH, 0.5, 80), Crossing(MONTH, 0.8, 80))


# --- the local store's counters ----------------------------------------------------------


def test_a_refund_of_the_whole_reservation_leaves_the_counter_at_zero() -> None:
    store = LocalBucketStore()
    store.reserve_now((), (Charge(DAY, 5),))
    assert store.spent(DAY.key) == 5
    store.reserve_now((), (Charge(DAY, -5),))  # what settle adds for an answer costing 0
    assert store.spent(DAY.key) == 0


def test_a_window_that_ended_as_this_one_began_goes_with_its_first_charge() -> None:
    store = LocalBucketStore()
    yesterday = SpendBudget.at(KEY, "day", HUNDRED_NANO_USD, YESTERDAY)
    assert yesterday.resets_at == DAY.starts_at
    store.reserve_now((), (Charge(yesterday, 5),))
    store.reserve_now((), (Charge(DAY, 3),))
    assert (store.spent(yesterday.key), store.spent(DAY.key)) == (0, 3)


async def test_a_settlement_of_nothing_opens_no_window_and_keeps_the_last_ones_refund() -> None:
    """A call that cost exactly its reservation settles 0 to today's window: yesterday's
    counter stays, so a call reserved yesterday still gets its refund."""
    store = LocalBucketStore()
    yesterday = SpendBudget.at(KEY, "day", HUNDRED_NANO_USD, YESTERDAY)
    store.reserve_now((), (Charge(yesterday, 5),))
    assert await store.settle((), (Charge(DAY, 0),)) == ()
    assert store.spent(yesterday.key) == 5
    await store.settle((), (Charge(yesterday, -2),))
    assert store.spent(yesterday.key) == 3


def test_one_nano_dollar_that_reaches_a_fraction_is_reported() -> None:
    store = LocalBucketStore()
    store.reserve_now((), (Charge(DAY, 49),))
    assert store.reserve_now((), (Charge(DAY, 1),)).crossings == (Crossing(DAY, 0.5, 50),)


async def test_a_settlement_of_nothing_reports_no_fraction_a_lowered_budget_puts_it_past() -> None:
    """The budget lowered (a configuration reload: the same window's counter) puts the spend
    past fractions not reported yet; a zero settlement brings the spend nowhere, so it reports
    none; the next charge does, once."""
    store = LocalBucketStore()
    assert store.reserve_now((), (Charge(DAY, 60),)).crossings == (Crossing(DAY, 0.5, 60),)
    lowered = SpendBudget.at(KEY, "day", HUNDRED_NANO_USD / 2, TODAY)
    assert lowered.key == DAY.key
    assert await store.settle((), (Charge(lowered, 0),)) == ()
    assert await store.settle((), (Charge(lowered, 1),)) == (
        Crossing(lowered, 0.8, 61),
        Crossing(lowered, 1.0, 61),
    )
