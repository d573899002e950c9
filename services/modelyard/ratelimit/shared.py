"""Buckets and spend counters in shared memory: every gateway process on this host that
maps the same file (`rate_limits.shared_memory`) shares one set of limits, without Redis.

The native `SharedLimits` judges a whole request under one lock, so across processes a
request is all or nothing as it is within one process's event loop; the rules are the
in-process store's (`local.py`): new or changed limits start full, a demand that can never
fit is refused for good, a refund never goes below zero, each alert fraction is told once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from modelyard._native import SharedLimits
from modelyard.ratelimit.plan import Demand, Shortfall
from modelyard.ratelimit.spend import Charge, Crossing, Overspend, crossings
from modelyard.ratelimit.store import Outcome

DEFAULT_SLOTS = 65536  # buckets, and spend counters: 4 MiB each, touched only as used


def _demands(demands: Sequence[Demand]) -> list[tuple[str, float, float, float]]:
    return [
        (d.bucket.key, d.amount, d.bucket.capacity, d.bucket.refill_per_second) for d in demands
    ]


def _charges(charges: Sequence[Charge]) -> list[tuple[str, int, int, float, float]]:
    return [
        (
            c.budget.key,
            c.nano,
            c.budget.budget_nano,
            c.budget.starts_at.timestamp(),
            c.budget.resets_at.timestamp(),
        )
        for c in charges
    ]


class SharedBucketStore:
    """The `BucketStore` whose buckets and counters live in the file at `path`."""

    def __init__(self, path: Path, slots: int = DEFAULT_SLOTS) -> None:
        self.path = path
        self._table = SharedLimits(str(path), slots, slots)

    def take_now(self, demands: Sequence[Demand]) -> tuple[Shortfall, ...]:
        """Every demand or none; the refusing buckets."""
        never = [Shortfall(d.bucket, math.inf) for d in demands if not d.fits]
        fitting = [d for d in demands if d.fits]
        waits = self._table.take(_demands(fitting), keep=not never) if fitting else []
        return tuple(never) + tuple(
            Shortfall(d.bucket, wait) for d, wait in zip(fitting, waits, strict=True) if wait > 0
        )

    def reserve_now(self, demands: Sequence[Demand], charges: Sequence[Charge]) -> Outcome:
        never = [Shortfall(d.bucket, math.inf) for d in demands if not d.fits]
        if never:  # refused for good: judged only, nothing taken or added
            over = tuple(
                Overspend(c.budget, spent, c.nano)
                for c in charges
                if (spent := self.spent(c.budget.key)) + c.nano > c.budget.budget_nano
            )
            return Outcome(self.take_now(demands), self, over)
        admitted, waits, before, after = self._table.reserve(_demands(demands), _charges(charges))
        shortfalls = tuple(
            Shortfall(d.bucket, wait) for d, wait in zip(demands, waits, strict=True) if wait > 0
        )
        if not admitted:
            refused = tuple(
                Overspend(c.budget, spent, c.nano)
                for c, spent in zip(charges, before, strict=True)
                if spent + c.nano > c.budget.budget_nano
            )
            return Outcome(shortfalls, self, refused)
        return Outcome((), self, (), self._told(charges, after))

    def _told(self, charges: Sequence[Charge], after: Sequence[int]) -> tuple[Crossing, ...]:
        """The alert fractions these charges reached first, in any process."""
        found: list[Crossing] = []
        for charge, spent in zip(charges, after, strict=True):
            if charge.nano <= 0:
                continue
            reached = charge.budget.reached(spent)
            if reached == 0:
                continue
            told = self._table.mark_told(charge.budget.key, reached)
            if reached > told:
                found += crossings(charge, told, reached, spent)
        return tuple(found)

    def spent(self, key: str) -> int:
        """Nano-dollars a budget window's counter holds (spent and reserved); 0 before use."""
        return self._table.spent(key)

    def level(self, demand: Demand) -> float:
        """What `demand`'s bucket holds now (full before its first use)."""
        bucket = demand.bucket
        return self._table.available(bucket.key, bucket.capacity, bucket.refill_per_second)

    async def take(self, demands: Sequence[Demand]) -> Outcome:
        return Outcome(self.take_now(demands), self)

    async def reserve(self, demands: Sequence[Demand], charges: Sequence[Charge]) -> Outcome:
        return self.reserve_now(demands, charges)

    async def give_back(self, demands: Sequence[Demand]) -> None:
        self._table.give_back(_demands(demands))

    async def settle(
        self, demands: Sequence[Demand], charges: Sequence[Charge]
    ) -> tuple[Crossing, ...]:
        self._table.give_back(_demands(demands))
        after = self._table.add(_charges(charges))
        return self._told(charges, after)

    async def close(self) -> None:
        pass  # the mapping goes with the object; the file stays for the other processes
