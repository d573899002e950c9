"""Buckets in this process, held by the native `TokenBucket`."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from modelyard._native import TokenBucket
from modelyard.ratelimit.plan import Bucket, Demand, Shortfall
from modelyard.ratelimit.store import Outcome


class LocalBucketStore:
    """Per-process buckets; a decision runs without awaiting, so it is atomic in the event loop.

    It works bucket by bucket so that a request is all or nothing across scopes:
    when the model admits a request and the API key refuses it, the model's share
    is given back.
    """

    def __init__(self) -> None:
        # bucket key -> (per_minute it was built with, the bucket)
        self._buckets: dict[str, tuple[float, TokenBucket]] = {}

    def _bucket(self, spec: Bucket) -> TokenBucket:
        known = self._buckets.get(spec.key)
        if known is None or known[0] != spec.per_minute:
            # New or changed limits start with a full bucket.
            known = (spec.per_minute, TokenBucket(spec.capacity, spec.refill_per_second))
            self._buckets[spec.key] = known
        return known[1]

    def take_now(self, demands: Sequence[Demand]) -> tuple[Shortfall, ...]:
        """`take` without the coroutine: every demand or none; the refusing buckets."""
        now = time.monotonic()
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
            # All or nothing; at the same `now` this restores the exact levels.
            for bucket, amount in taken:
                bucket.give_back(amount, now)
        return tuple(shortfalls)

    def level(self, spec: Bucket, now: float | None = None) -> float:
        """What `spec`'s bucket holds at `now` (monotonic seconds); full before its first use."""
        known = self._buckets.get(spec.key)
        if known is None or known[0] != spec.per_minute:
            return spec.capacity
        return known[1].available(time.monotonic() if now is None else now)

    async def take(self, demands: Sequence[Demand]) -> Outcome:
        return Outcome(self.take_now(demands), self)

    async def give_back(self, demands: Sequence[Demand]) -> None:
        now = time.monotonic()
        for demand in demands:
            known = self._buckets.get(demand.bucket.key)
            if known is not None and known[0] == demand.bucket.per_minute:
                known[1].give_back(demand.amount, now)

    async def close(self) -> None:
        pass
