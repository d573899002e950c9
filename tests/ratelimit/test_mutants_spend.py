"""Spend budgets at the points mutation testing found unchecked (docs/testing.md): the whole
message of a refusal (several budgets, a request costing exactly the budget), its retry
after near the reset, a monthly alert's line, amounts between cents, the UTC windows on a
machine in another zone, the keys' monthly default from the configuration, a key's own
token rate, and a refusal under the limiter's own clock."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from modelyard.config import parse_config
from modelyard.gateway.limits import ModelLimits
from modelyard.ratelimit.config import spend_config
from modelyard.ratelimit.plan import Rates, Scope
from modelyard.ratelimit.spend import (
    BudgetAlert,
    Overspend,
    SpendBudget,
    SpendConfig,
    SpendLimits,
    budget_exceeded,
    dollars,
    nano_usd,
    window_bounds,
)
from modelyard_client.errors import BudgetExceeded
from modelyard_client.v1 import common_pb2

NOON = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
TEAM = Scope.team("research")
KEY = Scope("key", "k1", "key 'k1'")
IN_FLIGHT = "(calls in flight count at their maximum)"
COST = "(its input estimate and max_tokens at the model's prices)"


def test_a_refusal_by_several_budgets_names_each_in_one_whole_message() -> None:
    day = SpendBudget.at(TEAM, "day", 10.0, NOON)
    month = SpendBudget.at(KEY, "month", 100.0, NOON)
    error = budget_exceeded(
        [Overspend(day, nano_usd(9.97), nano_usd(0.05)), Overspend(month, nano_usd(99.0), 1)],
        NOON,
    )
    assert error.message == (
        "team 'research' has spent $9.97 of its $10.00 daily budget; resets at 00:00 UTC; "
        "key 'k1' has spent $99.00 of its $100.00 monthly budget; "
        "resets on 2027-01-01 at 00:00 UTC "
        f"{IN_FLIGHT}. This request may cost up to $0.000000001 {COST}, "
        "more than is left: a lower max_tokens may fit"
    )


def test_a_request_costing_exactly_the_whole_budget_is_told_a_lower_max_tokens_may_fit() -> None:
    spend = SpendBudget.at(TEAM, "day", 1.0, NOON)
    error = budget_exceeded([Overspend(spend, 1, nano_usd(1.0))], NOON)
    assert error.message == (
        "team 'research' has spent $0.000000001 of its $1.00 daily budget; resets at 00:00 UTC "
        f"{IN_FLIGHT}. This request may cost up to $1.00 {COST}, "
        "more than is left: a lower max_tokens may fit"
    )


def test_a_request_dearer_than_the_whole_budget_is_told_to_ask_for_less() -> None:
    spend = SpendBudget.at(TEAM, "day", 1.0, NOON)
    error = budget_exceeded([Overspend(spend, 0, nano_usd(1.0) + 1)], NOON)
    assert error.message.endswith(
        "more than the whole budget: lower max_tokens or shorten the input"
    )


def test_half_a_second_before_the_reset_the_retry_is_after_half_a_second() -> None:
    spend = SpendBudget.at(TEAM, "day", 1.0, NOON)
    almost = datetime(2026, 12, 2, tzinfo=UTC) - timedelta(seconds=0.5)
    error = budget_exceeded([Overspend(spend, nano_usd(1.0), 1)], almost)
    assert error.retry_after_s == 0.5


def test_a_monthly_alert_says_monthly() -> None:
    alert = BudgetAlert("key:k1", "key 'k1'", "month", "2026-12", 0.8, 100.0, 80.5)
    assert str(alert) == (
        "key 'k1' has reached 80% of its $100.00 monthly budget for 2026-12 (UTC): "
        "$80.50 spent or held by calls in flight"
    )
    daily = BudgetAlert("key:k1", "key 'k1'", "day", "2026-12-01", 0.5, 4.0, 2.0)
    assert str(daily).startswith("key 'k1' has reached 50% of its $4.00 daily budget for ")


def test_an_amount_between_cents_shows_its_digits() -> None:
    assert [dollars(x) for x in (9.975, 0.125, 2.5)] == ["$9.975", "$0.125", "$2.50"]


@pytest.fixture
def new_york() -> Iterator[None]:
    """The process's local time zone is UTC-5 (in December) for the test."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TZ", "America/New_York")
        time.tzset()
        yield
    time.tzset()


@pytest.mark.usefixtures("new_york")
def test_the_windows_are_utc_whatever_the_machines_zone() -> None:
    assert time.strftime("%z", time.localtime(NOON.timestamp())) == "-0500"
    early = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)  # 21:00 on the 1st in New York
    assert window_bounds("day", early) == (
        "2026-12-02",
        datetime(2026, 12, 2, tzinfo=UTC),
        datetime(2026, 12, 3, tzinfo=UTC),
    )
    start, reset = window_bounds("day", early)[1:]
    assert (start.utcoffset(), reset.utcoffset()) == (timedelta(0), timedelta(0))


def test_the_keys_monthly_default_comes_from_the_configuration() -> None:
    config = parse_config(
        "model_system:\n  security:\n    budgets:\n      per_key: {daily_usd: 2, monthly_usd: 30}\n"
    )
    assert spend_config(config.security.budgets).per_key == SpendLimits(2.0, 30.0)


def test_a_keys_own_rates_overlay_the_default_each_on_its_own() -> None:
    default = Rates(requests_per_minute=60, tokens_per_minute=1000)
    assert default.overlaid(None, 500) == Rates(60, 500)
    assert default.overlaid(30, None) == Rates(30, 1000)
    assert default.overlaid(None, None) == default


async def test_a_spend_refusal_under_the_limiters_own_clock_is_a_budget_error() -> None:
    limits = ModelLimits(spend=SpendConfig(per_key=SpendLimits(daily_usd=0.01)))
    model = common_pb2.ModelEntry(id="p/m", provider="p")
    model.cost.usd_per_output_token = 0.001
    with pytest.raises(BudgetExceeded) as info:
        await limits.reserve(model, 100, "key-1", input_tokens=0)  # up to $0.10
    assert info.value.window == "day"
    assert 0 < info.value.retry_after_s <= 24 * 3600
