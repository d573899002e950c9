"""Per-model rate limits, enforced in process by the native token buckets.

A request reserves its estimated input tokens plus `max_tokens` before it is
sent, and the unused part is refunded when it finishes, so a long answer
cannot slip past a tokens-per-minute limit and a short one does not waste it.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelyard._native import RateLimit
from modelyard.errors import RateLimited
from modelyard.v1 import common_pb2


@dataclass
class Reservation:
    limit: RateLimit | None
    tokens: int

    def settle(self, used_tokens: int) -> None:
        """Give back what the request reserved but did not use."""
        if self.limit is not None and self.limit.tokens_per_minute and used_tokens < self.tokens:
            self.limit.refund(self.tokens - used_tokens)
        self.limit = None  # settle once


class ModelLimits:
    def __init__(self) -> None:
        # model id -> (the limits it was built from, the buckets)
        self._limits: dict[str, tuple[tuple[float, float], RateLimit]] = {}

    def reserve(self, model: common_pb2.ModelEntry, tokens: int) -> Reservation:
        """Take one request and `tokens` tokens from the model's budget, or raise RateLimited."""
        rpm, tpm = model.limits.requests_per_minute, model.limits.tokens_per_minute
        if not rpm and not tpm:
            return Reservation(None, tokens)
        known = self._limits.get(model.id)
        if known is None or known[0] != (rpm, tpm):
            # New or changed limits start with a full bucket.
            known = ((rpm, tpm), RateLimit(requests_per_minute=rpm, tokens_per_minute=tpm))
            self._limits[model.id] = known
        limit = known[1]
        wait = limit.try_acquire(tokens)
        if wait > 0:
            raise RateLimited(
                f"rate limit of model '{model.id}' reached "
                f"(requests_per_minute={rpm:g}, tokens_per_minute={tpm:g}, "
                f"this request reserves {tokens} tokens)",
                wait,
            )
        return Reservation(limit, tokens)
