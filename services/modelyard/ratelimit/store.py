"""Where buckets live: in this process, or in Redis shared by every replica."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from modelyard.ratelimit.plan import Demand, Shortfall


class BucketStore(Protocol):
    async def take(self, demands: Sequence[Demand]) -> Outcome:
        """Take every demand, or none of them and say which buckets refused."""
        ...

    async def give_back(self, demands: Sequence[Demand]) -> None:
        """Return amounts an admitted request took but did not use (best effort)."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class Outcome:
    shortfalls: tuple[Shortfall, ...]
    # The store that holds what was taken, so refunds go back to the same buckets
    # (a Redis store that failed open answers from its local fallback).
    ledger: BucketStore

    @property
    def admitted(self) -> bool:
        return not self.shortfalls
