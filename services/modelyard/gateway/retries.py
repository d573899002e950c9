"""What a failed model attempt leads to: a retry on the same model, the next model, or the end.

One table (`step_after`) says it for every error, one class per call
(`CallTries`) applies the numbers, and one per upstream (`RetryBudget`) keeps
retries to a share of what the upstream is asked. Pure: the clock and the
random draw are passed in, so tests drive them.

=====================================================  ==========  ===========================
error (raised before anything reached the caller)      step        why
=====================================================  ==========  ===========================
RateLimited from the upstream (HTTP 429)               RETRY       waits its retry delay
BackendUnavailable once sent (5xx, 529, refused or     RETRY       transient, the upstream's
reset before a response, the upstream's timeout)                   fault
StreamTruncated with nothing delivered                 RETRY       nothing reached the caller
BackendUnavailable before the call (not servable,      FAIL_OVER   nothing was sent: waiting
no deployment), ModelNotFound                                      will not change it
ContextLengthExceeded (known before, or answered)      FAIL_OVER   a larger window may serve
FirstTokenTimeout, StreamStalled (no chunk out)        FAIL_OVER   a silent route: not again
Overloaded (an upstream's queue is full),              FAIL_OVER   the gateway's own refusals
QuotaExceeded (the model's or caller's budget)                     for this model
ProviderAuthFailed, ProviderAccessDenied               FAIL_OVER   this provider's key; another
                                                                   provider's model may serve
ProviderError, ProviderProtocolError (no chunk out)    FAIL_OVER   this provider broke
InvalidRequest, ContentRejected, other refusals        REFUSE      the request as this model
                                                                   sees it
DeadlineExceeded, anything else                        END         nothing more can be tried
=====================================================  ==========  ===========================

REFUSE ends the call with the refusal when it is the call's first failure
(the caller gets the provider's own reason); after an earlier failure it is a
fallback's refusal, recorded and passed over, so the caller hears of the
original failure, never of a later model's refusal in its place.

A RETRY goes ahead only when every rule allows it, else the call fails over:

- the model's retry cap: ``backends.<name>.max_retries`` (1 + it attempts);
- the call's cap: no retry once ``gateway.retries.max_attempts_per_call``
  attempts were sent (every model and retry counted); each model of the
  chain still gets its first attempt, since the caller or the file named it;
- the upstream's budget: retries at most ``budget_ratio`` of its requests
  over the last ``budget_window_s`` (Envoy's retry budget), but at least
  `MIN_RETRIES_PER_WINDOW`, so a quiet upstream can still retry;
- the wait fits: full-jitter backoff (uniform in [0, min(max_backoff,
  base * 2**retry)]), at least the upstream's own delay (``Retry-After``,
  ``retry-after-ms``), and spaced so that no more than `SPACING_ATTEMPTS`
  attempts of one call reach one upstream within `SPACING_S`; a wait over
  ``max_backoff_ms`` or over what is left of the call's deadline is not
  waited: the call fails over at once.
"""

from __future__ import annotations

import enum
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from modelyard_client.errors import (
    BackendUnavailable,
    ContextLengthExceeded,
    DeadlineExceeded,
    FirstTokenTimeout,
    InvalidRequest,
    ModelNotFound,
    Overloaded,
    ProviderError,
    QuotaExceeded,
    RateLimited,
    StreamStalled,
    StreamTruncated,
)

# Below this many retries per window an upstream may always retry (Envoy's
# min_retry_concurrency is 3): 20 % of a handful of requests is no retry at all.
MIN_RETRIES_PER_WINDOW = 3
# Never more than this many attempts of one call to one upstream within SPACING_S.
SPACING_ATTEMPTS = 2
SPACING_S = 1.5
# The sliding window is kept in this many buckets: O(1) per request.
BUDGET_BUCKETS = 10

Clock = Callable[[], float]
Draw = Callable[[], float]  # uniform in [0, 1)


class Step(enum.Enum):
    RETRY = "retry"  # the same model again, when the rules allow; else FAIL_OVER
    FAIL_OVER = "fail_over"  # the next model of the chain
    REFUSE = "refuse"  # the first failure: the answer; after one: a fallback's, passed over
    END = "end"  # the call ends with this error


def step_after(exc: BaseException, *, sent: bool) -> Step:
    """What follows `exc`, an attempt's failure before anything reached the caller;
    `sent`: the attempt had been sent to its backend."""
    if isinstance(exc, DeadlineExceeded):  # a route's own deadline, or the call's
        return Step.FAIL_OVER if isinstance(exc, FirstTokenTimeout | StreamStalled) else Step.END
    if isinstance(exc, Overloaded | QuotaExceeded):
        return Step.FAIL_OVER
    if isinstance(exc, RateLimited):
        return Step.RETRY if sent else Step.FAIL_OVER
    if isinstance(exc, BackendUnavailable):
        return Step.RETRY if sent else Step.FAIL_OVER
    if isinstance(exc, StreamTruncated):
        return Step.RETRY
    if isinstance(exc, ModelNotFound | ContextLengthExceeded | ProviderError):
        return Step.FAIL_OVER  # ProviderError: auth, access, protocol and the rest
    if isinstance(exc, InvalidRequest):
        return Step.REFUSE  # ContentRejected and every other refusal of the request
    return Step.END


@dataclass(frozen=True, slots=True)
class RetryRules:
    """The numbers of `gateway.retries` (`RetryConfig`), in seconds."""

    max_attempts_per_call: int = 4
    budget_ratio: float = 0.2
    budget_window_s: float = 10.0
    base_backoff_s: float = 0.1
    max_backoff_s: float = 2.0

    def backoff_s(self, retry: int, draw: Draw) -> float:
        """Full jitter: retry `retry` (0: the first) waits uniformly up to the capped power of 2."""
        return draw() * min(self.max_backoff_s, self.base_backoff_s * 2.0**retry)


class RetryBudget:
    """One upstream's requests and retries over a sliding window; retries are allowed
    while they stay within `ratio` of the requests (or under `MIN_RETRIES_PER_WINDOW`).

    Hedged requests count as retries: they are extra load on the same upstream.
    """

    __slots__ = ("_bucket_s", "_buckets", "_current", "_ratio", "_requests", "_retries")

    def __init__(self, ratio: float, window_s: float) -> None:
        self._ratio = ratio
        self._bucket_s = window_s / BUDGET_BUCKETS
        self._current = 0  # index of the newest bucket, in bucket_s since the clock's zero
        self._buckets = [[0, 0] for _ in range(BUDGET_BUCKETS)]  # [requests, retries]
        self._requests = self._retries = 0  # sums over the window

    def _advance(self, now: float) -> list[int]:
        index = int(now / self._bucket_s)
        if index != self._current:
            for i in range(max(self._current + 1, index - BUDGET_BUCKETS + 1), index + 1):
                old = self._buckets[i % BUDGET_BUCKETS]
                self._requests -= old[0]
                self._retries -= old[1]
                old[0] = old[1] = 0
            self._current = index
        return self._buckets[index % BUDGET_BUCKETS]

    def requested(self, now: float) -> None:
        """A first attempt (or a fallback's) was sent to this upstream."""
        self._advance(now)[0] += 1
        self._requests += 1

    def retried(self, now: float) -> None:
        """A retry (or a hedge) was sent to this upstream."""
        self._advance(now)[1] += 1
        self._retries += 1

    def allows_retry(self, now: float) -> bool:
        """One more retry stays within the budget."""
        self._advance(now)
        return self._retries < max(MIN_RETRIES_PER_WINDOW, self._ratio * self._requests)

    def counts(self, now: float) -> tuple[int, int]:
        """Requests and retries in the window ending `now`."""
        self._advance(now)
        return self._requests, self._retries


class RetryBudgets:
    """A `RetryBudget` per upstream, an upstream being a backend name (a catalog id's head)."""

    def __init__(
        self, rules: RetryRules, clock: Clock = time.monotonic, draw: Draw = random.random
    ) -> None:
        self.rules = rules
        self.clock = clock
        self.draw = draw
        self._by_model: dict[str, RetryBudget] = {}  # catalog id -> its upstream's
        self._by_upstream: dict[str, RetryBudget] = {}

    def for_model(self, model_id: str) -> RetryBudget:
        budget = self._by_model.get(model_id)
        if budget is None:
            upstream = upstream_of(model_id)
            budget = self._by_upstream.get(upstream)
            if budget is None:
                budget = RetryBudget(self.rules.budget_ratio, self.rules.budget_window_s)
                self._by_upstream[upstream] = budget
            self._by_model[model_id] = budget
        return budget


def upstream_of(model_id: str) -> str:
    """The upstream a catalog id's calls go to: its backend name (``openai/gpt-4o`` → openai)."""
    return model_id.partition("/")[0]


class CallTries:
    """One call's attempts: what was sent where and when, and whether a retry may follow."""

    __slots__ = ("_budgets", "_sent_at", "_sent_this", "retries_of_model", "sent")

    def __init__(self, budgets: RetryBudgets) -> None:
        self._budgets = budgets
        self._sent_at: list[tuple[str, float]] = []  # (upstream, when) per attempt sent
        self._sent_this = False
        self.retries_of_model = 0  # retries of the model being tried
        self.sent = 0  # attempts sent to a backend

    def next_model(self) -> None:
        self.retries_of_model = 0

    def starting(self) -> None:
        """An attempt starts; `sending` says once it is sent to its backend."""
        self._sent_this = False

    @property
    def reached_backend(self) -> bool:
        """The attempt that just ended had been sent to its backend."""
        return self._sent_this

    def sending(self, model_id: str) -> None:
        """The attempt is being sent to `model_id`'s backend: count it."""
        now = self._budgets.clock()
        if not self.retries_of_model:  # a retry was counted when it was granted
            self._budgets.for_model(model_id).requested(now)
        self._sent_at.append((upstream_of(model_id), now))
        self._sent_this = True
        self.sent += 1

    def may_attempt(self) -> bool:
        """The call's attempt cap leaves room for one more."""
        return self.sent < self._budgets.rules.max_attempts_per_call

    def retry_wait_s(
        self, exc: BaseException, model_id: str, max_retries: int, remaining_s: float
    ) -> float | None:
        """How long to wait before retrying `model_id` after `exc`, or None: fail over now."""
        rules = self._budgets.rules
        if self.retries_of_model >= max_retries or not self.may_attempt():
            return None
        now = self._budgets.clock()
        budget = self._budgets.for_model(model_id)
        if not budget.allows_retry(now):
            return None
        wait = rules.backoff_s(self.retries_of_model, self._budgets.draw)
        said = getattr(exc, "retry_after_s", None)  # RateLimited, BackendUnavailable
        if said is not None:
            wait = max(wait, said)
        upstream = upstream_of(model_id)
        recent = [at for name, at in self._sent_at if name == upstream][-SPACING_ATTEMPTS:]
        if len(recent) == SPACING_ATTEMPTS:
            wait = max(wait, recent[0] + SPACING_S - now)
        if wait > rules.max_backoff_s or wait >= remaining_s:
            return None
        # Counted now, not when sent: calls waiting out their backoff at once must not
        # all find the same room in the budget.
        budget.retried(now)
        self.retries_of_model += 1
        return wait
