"""Rate limits and quotas on the gateway's request path.

A request reserves its estimated input tokens plus `max_tokens` before it is
sent, and the unused part is refunded when it finishes, so a long answer
cannot slip past a tokens-per-minute limit and a short one does not waste it.
One that does not finish (truncated, failed) keeps its whole reservation:
what it cost upstream is unknown.

The reservation draws from every bucket that applies (the caller's API key, the
model, the model's provider) at once, all or nothing. The buckets live in this
process (native token buckets) or, with a Redis URL configured, in Redis, shared
by every gateway replica (`modelyard.ratelimit`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from modelyard.errors import QuotaExceeded, QuotaNeverFits
from modelyard.ratelimit.config import LimiterConfig
from modelyard.ratelimit.local import LocalBucketStore
from modelyard.ratelimit.plan import Demand, QuotaConfig, demands_for
from modelyard.ratelimit.store import BucketStore
from modelyard.v1 import common_pb2


@dataclass
class Reservation:
    """What one admitted request holds; `settle` it exactly once when the request ends."""

    tokens: int
    # The tokens-per-minute demands: requests are never given back.
    token_demands: tuple[Demand, ...] = ()
    ledger: BucketStore | None = None  # None: nothing to give back (or settled)

    async def settle(self, used_tokens: int) -> None:
        """Give back what the request reserved but did not use."""
        ledger, self.ledger = self.ledger, None  # settle once
        if ledger is None or used_tokens >= self.tokens or not self.token_demands:
            return
        unused = self.tokens - used_tokens
        await ledger.give_back([Demand(d.bucket, unused) for d in self.token_demands])


class ModelLimits:
    """The gateway's limiter: per-model limits from the catalog, plus per-key and per-provider
    quotas, in the given bucket store (in process unless told otherwise)."""

    def __init__(self, quotas: QuotaConfig | None = None, store: BucketStore | None = None) -> None:
        self.quotas = quotas or QuotaConfig()
        self.store: BucketStore = store or LocalBucketStore()

    @classmethod
    def from_config(cls, config: LimiterConfig) -> ModelLimits:
        return cls(config.quotas, config.build_store())

    async def reserve(
        self, model: common_pb2.ModelEntry, tokens: int, api_key: str | None = None
    ) -> Reservation:
        """Take one request and `tokens` tokens from every applicable budget, or raise.

        Raises `QuotaExceeded` (RESOURCE_EXHAUSTED with a retry-after: the longest
        wait among the refusing limits, all named), `QuotaNeverFits` when no wait
        would help, or `RateLimiterUnavailable` when shared buckets are unreachable
        and the policy is fail_closed.
        """
        demands = demands_for(model, api_key, tokens, self.quotas)
        if not demands:
            return Reservation(tokens)
        outcome = await self.store.take(demands)
        if not outcome.admitted:
            refused = [s.refused_limit() for s in outcome.shortfalls]
            if any(math.isinf(x.wait_s) for x in refused):
                raise QuotaNeverFits(refused, tokens)
            raise QuotaExceeded(refused, tokens)
        token_demands = tuple(d for d in demands if d.bucket.unit == "tokens")
        return Reservation(tokens, token_demands, outcome.ledger)

    async def close(self) -> None:
        """Release the store's connections (Redis)."""
        await self.store.close()
