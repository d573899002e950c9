"""Spend budgets: US dollars per UTC calendar day and month, per key and per team.

A request reserves its maximum cost before it is sent (the model's prices at
the input estimate and `max_tokens`: `gateway.limits`) from every budget that
applies to it, together with its rate-limit buckets, all or nothing; when it
ends, the reservation is settled to what the answer cost (its usage at the
model's prices, or the backend's own figure), so the unused part comes back.
One that does not finish (truncated, failed) keeps its reservation, as its
tokens do: what it cost upstream is unknown.

A budget takes a request when what is spent, plus what calls in flight hold,
plus the request's maximum fits in it. Every store decides that in one step
(one Redis script for all buckets and budgets of a request), so concurrent
requests on any number of replicas never reserve past a budget; the spend
passes it only by what answers cost beyond their reservation (an input longer
than estimated, a backend's own higher figure).

Amounts are integers of nano-dollars (1e-9 USD) in every store: a settlement
gives back exactly what it reserved and replicas add exactly. A window is a
UTC calendar day ("2026-12-01") or month ("2026-12") named by the gateway's
clock when the request is reserved; a settlement goes to the window its
reservation was in. A window's counter is kept a day past its reset.

Alerts: the fractions of `security.budgets.alert_at`. When a reservation (or a
settlement that costs more than its reservation) brings a budget's spend to a
fraction not reported yet in this window, that crossing is reported once: the
store marks it with the counter (in Redis for every replica), and the caller
that crossed it reports it (`BudgetAlerts`).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from opentelemetry import trace

from modelyard.ratelimit.plan import Scope, authenticated
from modelyard.security.principal import Principal
from modelyard_client.errors import BudgetExceeded, InvalidRequest

log = logging.getLogger(__name__)

Window = Literal["day", "month"]
NANO_PER_USD = 1_000_000_000
KEEP_AFTER_RESET = timedelta(days=1)
DEFAULT_ALERT_AT = (0.5, 0.8, 1.0)
RECENT_ALERTS = 1000  # how many `BudgetAlerts.recent` keeps


def nano_usd(usd: float) -> int:
    """US dollars as whole nano-dollars, the unit every store counts in."""
    return round(usd * NANO_PER_USD)


def usd_of(nano: int) -> float:
    return nano / NANO_PER_USD


def dollars(usd: float) -> str:
    """``$9.97``; below a cent or between cents, the digits that matter (``$0.000125``)."""
    if round(usd, 2) == usd:
        return f"${usd:,.2f}"
    return f"${usd:,.9f}".rstrip("0")


def window_bounds(window: Window, now: datetime) -> tuple[str, datetime, datetime]:
    """The UTC calendar window holding `now`: its name, start and reset."""
    now = now.astimezone(UTC)
    if window == "day":
        start = datetime(now.year, now.month, now.day, tzinfo=UTC)
        return start.strftime("%Y-%m-%d"), start, start + timedelta(days=1)
    start = datetime(now.year, now.month, 1, tzinfo=UTC)
    reset = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    return start.strftime("%Y-%m"), start, reset


@dataclass(frozen=True)
class SpendBudget:
    """One scope's budget for one window, as it stands at one instant."""

    scope: Scope
    window: Window
    budget_usd: float
    period: str  # the window's name: "2026-12-01" or "2026-12"
    starts_at: datetime
    resets_at: datetime
    alert_at: tuple[float, ...] = DEFAULT_ALERT_AT
    # How long its counter is kept from `at`'s instant: until a day after the window
    # resets, measured on the limiter's clock (so a store's own clock, Redis's, cannot
    # end a window early or late), in whole seconds.
    keep_s: int = 0

    @classmethod
    def at(
        cls,
        scope: Scope,
        window: Window,
        budget_usd: float,
        now: datetime,
        alert_at: tuple[float, ...] = DEFAULT_ALERT_AT,
    ) -> SpendBudget:
        period, start, reset = window_bounds(window, now)
        keep_s = math.ceil((reset + KEEP_AFTER_RESET - now).total_seconds())
        return cls(scope, window, budget_usd, period, start, reset, alert_at, keep_s)

    @property
    def key(self) -> str:
        """The counter's name, the same on every replica."""
        return f"spend:{self.scope.kind}:{self.scope.id}:{self.window}:{self.period}"

    @property
    def budget_nano(self) -> int:
        return nano_usd(self.budget_usd)

    @property
    def adjective(self) -> str:
        return "daily" if self.window == "day" else "monthly"

    def reset_text(self) -> str:
        if self.window == "day":
            return "resets at 00:00 UTC"
        return f"resets on {self.resets_at:%Y-%m-%d} at 00:00 UTC"

    def reached(self, spent_nano: int) -> int:
        """How many of `alert_at` (in order) a spend of `spent_nano` has reached."""
        return sum(1 for f in self.alert_at if spent_nano >= f * self.budget_nano)


@dataclass(frozen=True)
class Charge:
    """Add `nano` nano-dollars to `budget`'s counter (negative: give back)."""

    budget: SpendBudget
    nano: int


@dataclass(frozen=True)
class Overspend:
    """A budget that refused a request: `spent_nano` spent and held, `asked_nano` asked."""

    budget: SpendBudget
    spent_nano: int
    asked_nano: int


@dataclass(frozen=True)
class Crossing:
    """A budget's spend reached `fraction` of it, first in its window; `spent_nano` then."""

    budget: SpendBudget
    fraction: float
    spent_nano: int


def crossings(charge: Charge, told: int, reached: int, spent_nano: int) -> list[Crossing]:
    """The fractions between `told` (reported before) and `reached`, as a store found them."""
    fractions = charge.budget.alert_at[told:reached]
    return [Crossing(charge.budget, f, spent_nano) for f in fractions]


def budget_exceeded(refused: Sequence[Overspend], now: datetime) -> BudgetExceeded:
    """The error of a request its budgets refused: every refusing budget named; the one that
    resets last is the error's (its retry after: no earlier retry can pass)."""
    last = max(refused, key=lambda o: o.budget.resets_at)
    parts = [
        f"{o.budget.scope.label} has spent {dollars(usd_of(o.spent_nano))} of its "
        f"{dollars(o.budget.budget_usd)} {o.budget.adjective} budget; {o.budget.reset_text()}"
        for o in refused
    ]
    asked = usd_of(last.asked_nano)
    if any(o.asked_nano > o.budget.budget_nano for o in refused):
        why = "more than the whole budget: lower max_tokens or shorten the input"
    else:
        why = "more than is left: a lower max_tokens may fit"
    message = (
        f"{'; '.join(parts)} (calls in flight count at their maximum). This request may cost "
        f"up to {dollars(asked)} (its input estimate and max_tokens at the model's prices), {why}"
    )
    return BudgetExceeded(
        message,
        scope=str(last.budget.scope),
        window=last.budget.window,
        budget_usd=last.budget.budget_usd,
        spent_usd=usd_of(last.spent_nano),
        resets_at=last.budget.resets_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        retry_after_s=max(0.0, (last.budget.resets_at - now).total_seconds()),
    )


@dataclass(frozen=True)
class SpendLimits:
    """US dollars per UTC day and month; None: no budget."""

    daily_usd: float | None = None
    monthly_usd: float | None = None

    def problems(self, path: str) -> list[str]:
        return [
            f"{path}.{name}: must be a finite number > 0, got {value!r}"
            for name, value in (("daily_usd", self.daily_usd), ("monthly_usd", self.monthly_usd))
            if value is not None and not 0 < value < float("inf")
        ]

    def overlaid(self, daily_usd: float | None, monthly_usd: float | None) -> SpendLimits:
        """These limits with each given (not None) one in its place: a key's own first."""
        return SpendLimits(
            self.daily_usd if daily_usd is None else daily_usd,
            self.monthly_usd if monthly_usd is None else monthly_usd,
        )


@dataclass(frozen=True)
class SpendConfig:
    """Who has which budget (`security.budgets`): each key its own (its record's), else
    `per_key`; each team of `per_team` one for all its keys; `alert_at` for all."""

    per_key: SpendLimits = SpendLimits()
    per_team: Mapping[str, SpendLimits] = field(default_factory=dict)
    alert_at: tuple[float, ...] = DEFAULT_ALERT_AT

    def __post_init__(self) -> None:
        problems = self.per_key.problems("per_key")
        for name, limits in self.per_team.items():
            problems += limits.problems(f"per_team[{name!r}]")
        if list(self.alert_at) != sorted(set(self.alert_at)) or not all(
            0 < f <= 1 for f in self.alert_at
        ):
            problems.append(
                f"alert_at: must be increasing fractions in (0, 1], got {self.alert_at}"
            )
        if problems:
            raise InvalidRequest("; ".join(problems))

    def may_apply(self, principal: Principal | None) -> bool:
        """Whether a call by `principal` can meet any budget (false in the common case of
        none configured and none on its key: the call pays this one check)."""
        if self.per_key.daily_usd is not None or self.per_key.monthly_usd is not None:
            return True
        if principal is None or not authenticated(principal):
            return False
        own = principal.daily_budget_usd is not None or principal.monthly_budget_usd is not None
        return own or bool(principal.team and principal.team in self.per_team)

    def budgets_for(
        self, key: Scope, principal: Principal | None, now: datetime
    ) -> tuple[SpendBudget, ...]:
        """The budgets a call by `principal` (its key scope `key`) draws from at `now`."""
        own, team = self.per_key, None
        if principal is not None and authenticated(principal):
            own = own.overlaid(principal.daily_budget_usd, principal.monthly_budget_usd)
            team = principal.team or None
        scoped = [(key, own)]
        team_limits = self.per_team.get(team) if team else None
        if team and team_limits is not None:
            scoped.append((Scope.team(team), team_limits))
        budgets: list[SpendBudget] = []
        for scope, limits in scoped:
            windows: tuple[tuple[Window, float | None], ...] = (
                ("day", limits.daily_usd),
                ("month", limits.monthly_usd),
            )
            for window, amount in windows:
                if amount is not None:
                    budgets.append(SpendBudget.at(scope, window, amount, now, self.alert_at))
        return tuple(budgets)


@dataclass(frozen=True)
class BudgetAlert:
    """One reported crossing, as an operator reads it."""

    scope: str  # "team:research"
    label: str  # "team 'research'"
    window: Window
    period: str
    fraction: float
    budget_usd: float
    spent_usd: float

    def __str__(self) -> str:
        return (
            f"{self.label} has reached {self.fraction:.0%} of its {dollars(self.budget_usd)} "
            f"{'daily' if self.window == 'day' else 'monthly'} budget for {self.period} (UTC): "
            f"{dollars(self.spent_usd)} spent or held by calls in flight"
        )


class BudgetAlerts:
    """Where crossings go: a WARNING log line each, a ``budget.alert`` event on the current
    span (exported with the call's trace when tracing is on), and `recent`, the last
    `RECENT_ALERTS` of this process for embedders and tests."""

    def __init__(self, keep: int = RECENT_ALERTS) -> None:
        self.recent: deque[BudgetAlert] = deque(maxlen=keep)

    def report(self, found: Iterable[Crossing]) -> None:
        for crossing in found:
            b = crossing.budget
            alert = BudgetAlert(
                str(b.scope),
                b.scope.label,
                b.window,
                b.period,
                crossing.fraction,
                b.budget_usd,
                usd_of(crossing.spent_nano),
            )
            self.recent.append(alert)
            log.warning("budget alert: %s", alert)
            trace.get_current_span().add_event(
                "budget.alert",
                {
                    "budget.scope": alert.scope,
                    "budget.window": alert.window,
                    "budget.period": alert.period,
                    "budget.fraction": alert.fraction,
                    "budget.usd": alert.budget_usd,
                    "budget.spent_usd": alert.spent_usd,
                },
            )
