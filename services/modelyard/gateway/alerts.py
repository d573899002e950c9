"""Alerts: the rules of `monitoring.alert_thresholds` over the gateway's live figures, and
the incidents they open and close.

Every `monitoring.metrics_interval` (5 s) `Alerts` evaluates, over each model's window
(`performance.py`: the last 60 s of attempts) with at least `MIN_SAMPLES` attempts in
it, so that one failed call of a quiet model is no incident:

- ``error_rate``: the share of attempts that failed > `error_rate`;
- ``latency_p95``: the p95 latency of the attempts that succeeded > `latency_p95_ms`;
- ``cost_per_hour``: what the window's answers cost, per hour at the window's pace
  (cost per answer * answers per second * 3600; failed attempts cost nothing known)
  > `cost_per_hour_usd` (0 or absent: the rule is off);

and one budget rule: a spend budget (`security.budgets`) whose spend crossed the last
of its `alert_at` fractions (1.0 by default) in this window. The crossing is the one
`BudgetAlerts` reports, once per budget and window, on the gateway whose call crossed
it (`ratelimit/spend.py`), so on several replicas that gateway alone fires it; the
incident holds until the budget's window (UTC day or month, on the limiter's clock)
resets. Spend given back below the fraction does not resolve it: no one reports that.

An incident is keyed by (rule, model) or (``budget``, budget scope and window). It
fires once, at the first evaluation that finds its rule broken, and is resolved once,
at the first evaluation after that which finds the rule holding (one full evaluation:
the window's figures back within the threshold, or the model down to fewer than
`MIN_SAMPLES` attempts in the window, which is no evidence of a breach); in between,
evaluations that find it still broken send nothing. Each firing and resolution is a
log line (WARNING, INFO) and, with `monitoring.alert_webhook` set, a message to it
(`webhook.py`); without one, alerts are logged only.

State is this process's: a restarted gateway fires again what still breaks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from modelyard.config.schema import AlertThresholds
from modelyard.gateway.performance import PerformanceTracker
from modelyard.meters.instruments import Attributes, Instrument
from modelyard.ratelimit.spend import BudgetAlert, BudgetAlerts, dollars, window_bounds

log = logging.getLogger(__name__)

MIN_SAMPLES = 5  # attempts a model's window needs before its rules are evaluated
RECENT_MESSAGES = 1000  # how many `Alerts.sent` keeps

Rule = Literal["error_rate", "latency_p95", "cost_per_hour", "budget"]
State = Literal["firing", "resolved"]


@dataclass(frozen=True, slots=True)
class Breach:
    """One rule broken at one evaluation: what it measured against its threshold."""

    rule: Rule
    scope: str  # the model id, or the budget's "key:… day"
    value: float
    threshold: float
    detail: str  # what was measured, as an operator reads it
    samples: int = 0  # the window's attempts (0 for a budget)

    @property
    def key(self) -> tuple[Rule, str]:
        return self.rule, self.scope


@dataclass(frozen=True, slots=True)
class AlertMessage:
    """An incident firing or resolved; `breach`: what fired it (the last one seen)."""

    state: State
    breach: Breach
    at: float  # Unix time
    now: str = ""  # resolved: what the rule measures now

    @property
    def key(self) -> tuple[Rule, str]:
        return self.breach.key

    def attributes(self, delivery: Literal["logged", "delivered", "dropped"]) -> Attributes:
        """Its series of ``modelyard.alerts``, once its fate is known."""
        return (
            ("modelyard.alert.rule", self.breach.rule),
            ("modelyard.alert.state", self.state),
            ("modelyard.alert.delivery", delivery),
        )

    def text(self) -> str:
        b = self.breach
        if self.state == "firing":
            return f"[FIRING] {_TITLES[b.rule]} on {b.scope}: {b.detail}"
        return f"[RESOLVED] {_TITLES[b.rule]} on {b.scope}: {self.now}"


_TITLES: dict[Rule, str] = {
    "error_rate": "error rate",
    "latency_p95": "p95 latency",
    "cost_per_hour": "cost per hour",
    "budget": "spend budget",
}


class Sink(Protocol):
    """Where messages go besides the log (`webhook.Webhook`)."""

    def send(self, message: AlertMessage) -> None:
        """Take `message` without waiting."""
        ...

    async def run(self) -> None:
        """Deliver what `send` took, until cancelled."""
        ...


class AlertRules:
    """The rules over `tracker`'s windows and the crossings `budgets` reported (see the
    module docstring). `alert_at`: the budgets' fractions; `utc_now`: the limiter's clock,
    which names a budget's window."""

    def __init__(
        self,
        thresholds: AlertThresholds,
        tracker: PerformanceTracker,
        budgets: BudgetAlerts | None = None,
        alert_at: tuple[float, ...] = (1.0,),
        utc_now: Callable[[], datetime] | None = None,
    ) -> None:
        self.thresholds = thresholds
        self.tracker = tracker
        self.budgets = budgets
        self.last_fraction = alert_at[-1] if alert_at else 1.0
        self.utc_now = utc_now
        self._crossed: dict[str, BudgetAlert] = {}  # budget scope and window → its crossing

    def breaches(self) -> list[Breach]:
        """Every rule broken now."""
        found: list[Breach] = []
        for model_id in self.tracker.model_ids():
            found.extend(self.model_breaches(model_id))
        found.extend(self.budget_breaches())
        return found

    def model_breaches(self, model_id: str) -> list[Breach]:
        f = self.tracker.figures(model_id)
        if f.requests < MIN_SAMPLES:
            return []
        t, found = self.thresholds, []
        window = f"{f.requests} attempts in the last {f.window_s:.0f}s"
        if f.error_rate > t.error_rate:
            found.append(
                Breach(
                    "error_rate",
                    model_id,
                    f.error_rate,
                    t.error_rate,
                    f"{f.error_rate:.1%} of {window} failed (threshold {t.error_rate:.1%})",
                    f.requests,
                )
            )
        if f.succeeded and f.latency_ms_p95 > t.latency_p95_ms:
            found.append(
                Breach(
                    "latency_p95",
                    model_id,
                    f.latency_ms_p95,
                    t.latency_p95_ms,
                    f"p95 {f.latency_ms_p95:.0f} ms over {window} "
                    f"(threshold {t.latency_p95_ms} ms)",
                    f.requests,
                )
            )
        per_hour = cost_per_hour_usd(f.cost_per_request_usd, f.succeeded, f.window_s)
        if t.cost_per_hour_usd and per_hour > t.cost_per_hour_usd:
            found.append(
                Breach(
                    "cost_per_hour",
                    model_id,
                    per_hour,
                    t.cost_per_hour_usd,
                    f"{dollars(per_hour)}/h at the pace of {window} "
                    f"(threshold {dollars(t.cost_per_hour_usd)}/h)",
                    f.requests,
                )
            )
        return found

    def budget_breaches(self) -> list[Breach]:
        if self.budgets is None or self.utc_now is None:
            return []
        for alert in self.budgets.recent:  # at most RECENT_ALERTS: read every round
            if alert.fraction >= self.last_fraction:
                self._crossed[f"{alert.scope} {alert.window}"] = alert
        now = self.utc_now()
        found = []
        for scope, alert in list(self._crossed.items()):
            if window_bounds(alert.window, now)[0] != alert.period:
                del self._crossed[scope]  # its window reset
                continue
            found.append(
                Breach(
                    "budget",
                    scope,
                    alert.spent_usd,
                    alert.budget_usd * alert.fraction,
                    str(alert),
                )
            )
        return found

    def holding(self, breach: Breach) -> str:
        """What `breach`'s rule measures now that it holds."""
        if breach.rule == "budget":
            return f"{breach.scope}: its budget window reset"
        f = self.tracker.figures(breach.scope)
        if f.requests < MIN_SAMPLES:
            return f"{f.requests} attempts in the last {f.window_s:.0f}s (fewer than {MIN_SAMPLES})"
        value = {
            "error_rate": f"{f.error_rate:.1%} failed",
            "latency_p95": f"p95 {f.latency_ms_p95:.0f} ms",
            "cost_per_hour": (
                f"{dollars(cost_per_hour_usd(f.cost_per_request_usd, f.succeeded, f.window_s))}/h"
            ),
        }[breach.rule]
        return f"{value} over {f.requests} attempts in the last {f.window_s:.0f}s"


def cost_per_hour_usd(cost_per_answer_usd: float, answers: int, window_s: float) -> float:
    """The window's pace of spending, per hour."""
    return cost_per_answer_usd * answers / window_s * 3600 if window_s > 0 else 0.0


class Incidents:
    """The open incidents: `update` with one evaluation's breaches gives the messages it
    makes, firings and resolutions, each once per incident."""

    def __init__(self) -> None:
        self.open: dict[tuple[Rule, str], Breach] = {}

    def update(
        self, breaches: Iterable[Breach], at: float, holding: Callable[[Breach], str]
    ) -> list[AlertMessage]:
        now = {b.key: b for b in breaches}
        held = [self.open.pop(key) for key in [k for k in self.open if k not in now]]
        messages = [AlertMessage("resolved", b, at, holding(b)) for b in held]
        for key, breach in now.items():
            if key not in self.open:
                messages.append(AlertMessage("firing", breach, at))
            self.open[key] = breach  # the latest figures, for its resolution's message
        return messages


class Alerts:
    """Evaluates `rules` every `interval_s` and sends what changes to the log and `sink`;
    `meter` counts the messages logged only (no sink)."""

    def __init__(
        self,
        rules: AlertRules,
        interval_s: float,
        sink: Sink | None = None,
        clock: Callable[[], float] = time.time,
        meter: Instrument | None = None,
    ) -> None:
        self.rules = rules
        self.interval_s = interval_s
        self.sink = sink
        self.meter = meter  # ``modelyard.alerts``: the sink counts what it delivers
        self.incidents = Incidents()
        self.sent: deque[AlertMessage] = deque(maxlen=RECENT_MESSAGES)  # the latest made
        self._clock = clock

    async def run(self) -> None:
        """Evaluate every `interval_s`, and deliver to the sink, until cancelled."""
        if self.sink is None:
            log.info("alerts: no monitoring.alert_webhook set, alerts are logged only")
            delivery = None
        else:
            delivery = asyncio.create_task(self.sink.run())
        try:
            while True:
                await asyncio.sleep(self.interval_s)
                self.evaluate()
        finally:
            if delivery is not None:
                delivery.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await delivery

    def evaluate(self) -> list[AlertMessage]:
        """One evaluation: the messages it made, logged and handed to the sink."""
        messages = self.incidents.update(self.rules.breaches(), self._clock(), self.rules.holding)
        for message in messages:
            level = logging.WARNING if message.state == "firing" else logging.INFO
            log.log(level, "alert: %s", message.text())
            self.sent.append(message)
            if self.sink is not None:
                self.sink.send(message)
            elif self.meter is not None:
                self.meter.add(1, message.attributes("logged"))
        return messages
