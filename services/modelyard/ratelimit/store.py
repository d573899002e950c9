"""Where buckets and spend counters live: in this process, or in Redis shared by every replica."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from modelyard.ratelimit.plan import Demand, Shortfall
from modelyard.ratelimit.spend import Charge, Crossing, Overspend


class BucketStore(Protocol):
    async def take(self, demands: Sequence[Demand]) -> Outcome:
        """Take every demand, or none of them and say which buckets refused."""
        ...

    async def give_back(self, demands: Sequence[Demand]) -> None:
        """Return amounts an admitted request took but did not use (best effort)."""
        ...

    async def reserve(self, demands: Sequence[Demand], charges: Sequence[Charge]) -> Outcome:
        """`take`, and add every charge to its budget's counter, all in one step or nothing;
        say which buckets and budgets refused, or which alert fractions the charges crossed."""
        ...

    async def settle(
        self, demands: Sequence[Demand], charges: Sequence[Charge]
    ) -> tuple[Crossing, ...]:
        """`give_back`, and add the charges (negative: refunds) in the same step; the alert
        fractions a charge above its reservation crossed (best effort)."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class Outcome:
    shortfalls: tuple[Shortfall, ...]
    # The store that holds what was taken, so refunds go back to the same buckets
    # (a Redis store that failed open answers from its local fallback).
    ledger: BucketStore
    overspends: tuple[Overspend, ...] = ()  # the budgets that refused
    crossings: tuple[Crossing, ...] = ()  # alert fractions the admitted charges reached first

    @property
    def admitted(self) -> bool:
        return not self.shortfalls and not self.overspends
