"""How a rate-limit decision fails, as the project's own error classes."""

from __future__ import annotations

import math
from collections.abc import Sequence

import grpc

from modelyard.errors import ModelyardError, RateLimited, RequestTooLarge
from modelyard.ratelimit.plan import Shortfall

# Trailing-metadata key naming the scopes whose limits refused ("model:x,key:anonymous").
RATE_LIMIT_SCOPES_KEY = "rate-limit-scopes"


def _describe(shortfalls: Sequence[Shortfall]) -> str:
    return ", ".join(
        f"{s.bucket.scope.label} {s.bucket.limit_name}={s.bucket.per_minute:g}" for s in shortfalls
    )


class QuotaExceeded(RateLimited):
    """Buckets refused the request; retry after the longest of their waits.

    The message names every refusing limit (scope, id, which limit and its value).
    """

    def __init__(self, shortfalls: Sequence[Shortfall], tokens: int) -> None:
        self.shortfalls = tuple(shortfalls)
        super().__init__(
            f"rate limit reached: {_describe(self.shortfalls)} "
            f"(this request reserves 1 request and {tokens} tokens)",
            max(s.wait_s for s in self.shortfalls),
        )

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        scopes = ",".join(dict.fromkeys(str(s.bucket.scope) for s in self.shortfalls))
        return (*super().trailing_metadata(), (RATE_LIMIT_SCOPES_KEY, scopes))


class QuotaNeverFits(RequestTooLarge):
    """The request needs more than a full bucket holds: waiting will not help."""

    def __init__(self, shortfalls: Sequence[Shortfall], tokens: int) -> None:
        never = [s for s in shortfalls if math.isinf(s.wait_s)]
        self.shortfalls = tuple(never)
        super().__init__(
            f"this request reserves {tokens} tokens (estimated input + max_tokens), more than "
            f"{_describe(never)} ever allows at once: lower max_tokens or shorten the input"
        )


class RateLimiterUnavailable(ModelyardError):
    """The shared rate-limit store cannot be reached and the policy is to refuse (fail_closed)."""

    code = grpc.StatusCode.UNAVAILABLE
