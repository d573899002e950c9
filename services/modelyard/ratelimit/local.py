"""Buckets in this process, held by the native `TokenBucket`; spend counters beside them."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from modelyard._native import TokenBucket
from modelyard.ratelimit.plan import Bucket, Demand, Shortfall
from modelyard.ratelimit.spend import Charge, Crossing, Overspend, crossings
from modelyard.ratelimit.store import Outcome


@dataclass
class _Counter:
    """One budget window's spend (nano-dollars) and how many alert fractions it reported."""

    spent: int
    told: int
    resets_at: float  # Unix seconds


class LocalBucketStore:
    """Per-process buckets and spend; a decision runs without awaiting, so it is atomic in
    the event loop.

    It works bucket by bucket so that a request is all or nothing across scopes:
    when the model admits a request and the API key refuses it, the model's share
    is given back.
    """

    def __init__(self) -> None:
        # bucket key -> (per_minute it was built with, the bucket)
        self._buckets: dict[str, tuple[float, TokenBucket]] = {}
        self._spend: dict[str, _Counter] = {}

    def _bucket(self, spec: Bucket) -> TokenBucket:
        known = self._buckets.get(spec.key)
        if known is None or known[0] != spec.per_minute:
            # New or changed limits start with a full bucket.
            known = (spec.per_minute, TokenBucket(spec.capacity, spec.refill_per_second))
            self._buckets[spec.key] = known
        return known[1]

    def take_now(self, demands: Sequence[Demand]) -> tuple[Shortfall, ...]:
        """`take` without the coroutine: every demand or none; the refusing buckets."""
        return self._take(demands, time.monotonic())

    def _take(self, demands: Sequence[Demand], now: float) -> tuple[Shortfall, ...]:
        shortfalls: list[Shortfall] = []
        taken: list[tuple[TokenBucket, float]] = []
        for demand in demands:
            if not demand.fits:
                shortfalls.append(Shortfall(demand.bucket, math.inf))
                continue
            bucket = self._bucket(demand.bucket)
            wait = bucket.try_take(demand.amount, now)
            if wait > 0:
                shortfalls.append(Shortfall(demand.bucket, wait))
            else:
                taken.append((bucket, demand.amount))
        if shortfalls:
            self._give_back(taken, now)
        return tuple(shortfalls)

    @staticmethod
    def _give_back(taken: Sequence[tuple[TokenBucket, float]], now: float) -> None:
        # All or nothing; at the same `now` this restores the exact levels.
        for bucket, amount in taken:
            bucket.give_back(amount, now)

    def reserve_now(self, demands: Sequence[Demand], charges: Sequence[Charge]) -> Outcome:
        """`reserve` without the coroutine."""
        now = time.monotonic()
        refused = [
            Overspend(c.budget, self.spent(c.budget.key), c.nano)
            for c in charges
            if self.spent(c.budget.key) + c.nano > c.budget.budget_nano
        ]
        shortfalls = self._take(demands, now)
        if refused or shortfalls:
            if not shortfalls:
                self._give_back([(self._bucket(d.bucket), d.amount) for d in demands], now)
            return Outcome(shortfalls, self, tuple(refused))
        found: list[Crossing] = []
        for charge in charges:
            found += self._add(charge)
        return Outcome((), self, (), tuple(found))

    def spent(self, key: str) -> int:
        """Nano-dollars a budget window's counter holds (spent and reserved); 0 before use."""
        counter = self._spend.get(key)
        return 0 if counter is None else counter.spent

    def _add(self, charge: Charge) -> list[Crossing]:
        budget = charge.budget
        counter = self._spend.get(budget.key)
        if counter is None:
            if charge.nano <= 0:
                return []  # a refund to a window no longer kept
            # The windows that ended before this one began are of no more use.
            begun = budget.starts_at.timestamp()
            for key in [k for k, c in self._spend.items() if c.resets_at <= begun]:
                del self._spend[key]
            counter = self._spend[budget.key] = _Counter(0, 0, budget.resets_at.timestamp())
        counter.spent = max(0, counter.spent + charge.nano)
        if charge.nano <= 0:
            return []
        reached = budget.reached(counter.spent)
        if reached <= counter.told:
            return []
        told, counter.told = counter.told, reached
        return crossings(charge, told, reached, counter.spent)

    def level(self, spec: Bucket, now: float | None = None) -> float:
        """What `spec`'s bucket holds at `now` (monotonic seconds); full before its first use."""
        known = self._buckets.get(spec.key)
        if known is None or known[0] != spec.per_minute:
            return spec.capacity
        return known[1].available(time.monotonic() if now is None else now)

    async def take(self, demands: Sequence[Demand]) -> Outcome:
        return Outcome(self.take_now(demands), self)

    async def reserve(self, demands: Sequence[Demand], charges: Sequence[Charge]) -> Outcome:
        return self.reserve_now(demands, charges)

    async def give_back(self, demands: Sequence[Demand]) -> None:
        now = time.monotonic()
        for demand in demands:
            known = self._buckets.get(demand.bucket.key)
            if known is not None and known[0] == demand.bucket.per_minute:
                known[1].give_back(demand.amount, now)

    async def settle(
        self, demands: Sequence[Demand], charges: Sequence[Charge]
    ) -> tuple[Crossing, ...]:
        await self.give_back(demands)
        found: list[Crossing] = []
        for charge in charges:
            found += self._add(charge)
        return tuple(found)

    async def close(self) -> None:
        pass
