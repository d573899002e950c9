"""Type stub for `modelyard._native`, the compiled rate-limiting core (native/).

Every `now` is monotonic seconds; pass `None` to use the process-wide monotonic
clock. Bad arguments raise `modelyard.errors.InvalidRequest`.
"""

from typing import final

__all__ = ["RateLimit", "TokenBucket"]

@final
class TokenBucket:
    """Holds up to `capacity` units and refills at `refill_per_second`; starts full."""

    def __new__(cls, capacity: float, refill_per_second: float) -> TokenBucket: ...
    def try_take(self, amount: float, now: float | None = None) -> float:
        """Take `amount` and return 0.0, or take nothing and return the seconds to wait.

        The wait is `inf` when the bucket never refills.
        """

    def give_back(self, amount: float, now: float | None = None) -> None:
        """Return `amount` to the bucket, never beyond capacity."""

    def available(self, now: float | None = None) -> float:
        """Units available at `now`."""

    @property
    def capacity(self) -> float: ...
    @property
    def refill_per_second(self) -> float: ...

@final
class RateLimit:
    """Requests- and tokens-per-minute limits judged together; 0 means unlimited.

    Each limit allows a burst of one minute's allowance and refills continuously.
    """

    def __new__(
        cls, requests_per_minute: float = 0.0, tokens_per_minute: float = 0.0
    ) -> RateLimit: ...
    def try_acquire(self, tokens: int, now: float | None = None) -> float:
        """Admit one request of `tokens` tokens and return 0.0, or admit nothing and
        return the retry-after in seconds (the longer of the two limits' waits)."""

    def refund(self, tokens: int, now: float | None = None) -> None:
        """Give back tokens an admitted request reserved but did not use."""

    @property
    def requests_per_minute(self) -> float: ...
    @property
    def tokens_per_minute(self) -> float: ...
