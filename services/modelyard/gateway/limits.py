"""Rate limits, quotas and spend budgets on the gateway's request path.

A request reserves its estimated input tokens plus `max_tokens` before it is
sent, and the unused part is refunded when it finishes, so a long answer
cannot slip past a tokens-per-minute limit and a short one does not waste it.
One that does not finish (truncated, failed) keeps its whole reservation:
what it cost upstream is unknown.

The reservation draws from every bucket that applies (the caller's key, its
team, the model, the model's provider) and from every spend budget of the
caller's key and team (US dollars per UTC day and month, at the request's
maximum cost: the model's prices at the input estimate and `max_tokens`) at
once, all or nothing; settling it books what the answer cost instead
(`modelyard.ratelimit.spend`). Who the caller is comes from the call's
principal (`modelyard.security.principal`). The buckets and counters live in
this process (native token buckets) or, with a Redis URL configured, in
Redis, shared by every gateway replica (`modelyard.ratelimit`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from modelyard.gateway.arm_outcomes import call_cost_usd
from modelyard.model_input import BYTES_PER_TOKEN
from modelyard.ratelimit.config import LimiterConfig
from modelyard.ratelimit.local import LocalBucketStore
from modelyard.ratelimit.plan import Demand, QuotaConfig, Scope, demands_for
from modelyard.ratelimit.spend import (
    BudgetAlerts,
    Charge,
    SpendBudget,
    SpendConfig,
    budget_exceeded,
    nano_usd,
)
from modelyard.ratelimit.store import BucketStore
from modelyard.security.principal import current_principal
from modelyard_client.errors import QuotaExceeded, QuotaNeverFits
from modelyard_client.v1 import common_pb2

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Reservation:
    """What one admitted request holds; `settle` it exactly once when the request ends."""

    tokens: int
    # The tokens-per-minute demands: requests are never given back.
    token_demands: tuple[Demand, ...] = ()
    ledger: BucketStore | None = None  # None: nothing to give back (or settled)
    charges: tuple[Charge, ...] = ()  # the maximum cost, held by each spend budget
    input_tokens: int = 0  # the estimate the cost was reserved with
    cost: common_pb2.CostProfile = field(default_factory=common_pb2.CostProfile)
    alerts: BudgetAlerts | None = field(default=None, compare=False)

    def cost_of(self, usage: common_pb2.Usage) -> float:
        """What an answer with `usage` cost: the backend's figure, else its tokens at the
        model's prices (the input estimate when the upstream reports no input count)."""
        return call_cost_usd(usage, self.cost, self.input_tokens)

    async def settle(self, used_tokens: int, used_usd: float | None = None) -> None:
        """Give back what the request reserved but did not use: the tokens beyond
        `used_tokens` and, when `used_usd` is known, the spend beyond it (an answer that
        cost more than its reservation adds the difference). `used_usd` None: the cost
        is unknown, the spend reservation stays whole."""
        ledger, self.ledger = self.ledger, None  # settle once
        if ledger is None:
            return
        unused = self.tokens - used_tokens
        refunds = [Demand(d.bucket, unused) for d in self.token_demands] if unused > 0 else []
        corrections = [
            Charge(c.budget, nano_usd(used_usd) - c.nano)
            for c in self.charges
            if used_usd is not None and nano_usd(used_usd) != c.nano
        ]
        if corrections:
            crossed = await ledger.settle(refunds, corrections)
            if self.alerts is not None:
                self.alerts.report(crossed)
        elif refunds:
            await ledger.give_back(refunds)


class ModelLimits:
    """The gateway's limiter: per-model limits from the catalog, plus per-key, per-team and
    per-provider quotas and spend budgets, in the given store (in process unless told
    otherwise). `clock` names the UTC day and month a reservation falls in; `alerts`
    is where budget crossings are reported."""

    def __init__(
        self,
        quotas: QuotaConfig | None = None,
        store: BucketStore | None = None,
        spend: SpendConfig | None = None,
        *,
        clock: Clock = utc_now,
        alerts: BudgetAlerts | None = None,
    ) -> None:
        self.quotas = quotas or QuotaConfig()
        self.store: BucketStore = store or LocalBucketStore()
        self.spend = spend or SpendConfig()
        self.clock = clock
        self.alerts = alerts or BudgetAlerts()

    @classmethod
    def from_config(cls, config: LimiterConfig) -> ModelLimits:
        return cls(config.quotas, config.build_store(), config.spend)

    async def reserve(
        self,
        model: common_pb2.ModelEntry,
        tokens: int,
        api_key: str | None = None,
        *,
        input_tokens: int = 0,
    ) -> Reservation:
        """Take one request and `tokens` tokens (`input_tokens` of them the input estimate,
        the rest `max_tokens`) from every applicable budget, or raise.

        Raises `BudgetExceeded` when a spend budget cannot take the request's maximum
        cost (RESOURCE_EXHAUSTED, retry after the budget's reset), `QuotaExceeded`
        (RESOURCE_EXHAUSTED with a retry-after: the longest wait among the refusing
        limits, all named), `QuotaNeverFits` when no wait would help, or
        `RateLimiterUnavailable` when shared buckets are unreachable and the policy
        is fail_closed.
        """
        principal = current_principal()
        demands = demands_for(model, api_key, tokens, self.quotas, principal)
        budgets: tuple[SpendBudget, ...] = ()
        if self.spend.may_apply(principal):
            now = self.clock()
            budgets = self.spend.budgets_for(Scope.caller(api_key, principal), principal, now)
        if not demands and not budgets:
            return Reservation(tokens)
        charges: tuple[Charge, ...] = ()
        if budgets:
            # A text-to-speech model bills characters: at most the input's bytes, which
            # the token estimate counts `BYTES_PER_TOKEN` to a token.
            spoken = input_tokens * BYTES_PER_TOKEN if model.cost.usd_per_character else 0
            most = common_pb2.Usage(
                input_tokens=input_tokens,
                output_tokens=max(0, tokens - input_tokens),
                characters=spoken,
            )
            charges = tuple(Charge(b, nano_usd(call_cost_usd(most, model.cost))) for b in budgets)
            outcome = await self.store.reserve(demands, charges)
        else:
            outcome = await self.store.take(demands)
        if outcome.overspends:
            raise budget_exceeded(outcome.overspends, now)
        if not outcome.admitted:
            refused = [s.refused_limit() for s in outcome.shortfalls]
            if any(math.isinf(x.wait_s) for x in refused):
                raise QuotaNeverFits(refused, tokens)
            raise QuotaExceeded(refused, tokens)
        self.alerts.report(outcome.crossings)
        token_demands = tuple(d for d in demands if d.bucket.unit == "tokens")
        return Reservation(
            tokens,
            token_demands,
            outcome.ledger,
            charges,
            input_tokens,
            model.cost,
            self.alerts,
        )

    async def close(self) -> None:
        """Release the store's connections (Redis)."""
        await self.store.close()
