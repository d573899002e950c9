"""The retry rules on their own (`gateway/retries.py`): the table, full-jitter backoff, the
upstream's delay, the 1.5 s spacing, the budget's sliding window and the caps, on a fake clock."""

from __future__ import annotations

import pytest

from modelyard.gateway.retries import (
    MIN_RETRIES_PER_WINDOW,
    CallTries,
    RetryBudget,
    RetryBudgets,
    RetryRules,
    Step,
    step_after,
)
from modelyard_client.errors import (
    AllModelsFailed,
    BackendUnavailable,
    ContentRejected,
    ContextLengthExceeded,
    DeadlineExceeded,
    FirstTokenTimeout,
    InvalidRequest,
    ModelNotFound,
    ModelyardError,
    Overloaded,
    ProviderAccessDenied,
    ProviderAuthFailed,
    ProviderProtocolError,
    QuotaExceeded,
    RateLimited,
    RefusedLimit,
    StreamStalled,
    StreamTruncated,
)

MODEL = "openai/gpt-4o"
RULES = RetryRules(
    max_attempts_per_call=4,
    budget_ratio=0.2,
    budget_window_s=10.0,
    base_backoff_s=0.1,
    max_backoff_s=2.0,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _tries(draw: float = 0.5, rules: RetryRules = RULES) -> tuple[CallTries, Clock, RetryBudgets]:
    clock = Clock()
    budgets = RetryBudgets(rules, clock, lambda: draw)
    return CallTries(budgets), clock, budgets


_QUOTA = QuotaExceeded([RefusedLimit("model:x", "model 'x'", "tokens_per_minute", 10.0, 3.0)], 5)


@pytest.mark.parametrize(
    ("error", "sent", "step"),
    [
        (RateLimited("429", 1.0), True, Step.RETRY),
        (BackendUnavailable("503"), True, Step.RETRY),
        (StreamTruncated("empty stream"), True, Step.RETRY),
        (BackendUnavailable("no deployment"), False, Step.FAIL_OVER),
        (AllModelsFailed([]), False, Step.FAIL_OVER),
        (ModelNotFound("x/y"), False, Step.FAIL_OVER),
        (ContextLengthExceeded("too long", "context_length_exceeded"), True, Step.FAIL_OVER),
        (FirstTokenTimeout("silent"), True, Step.FAIL_OVER),
        (StreamStalled("stalled"), True, Step.FAIL_OVER),
        (Overloaded("full", 1.0, "upstream:x"), False, Step.FAIL_OVER),
        (_QUOTA, False, Step.FAIL_OVER),
        (ProviderAuthFailed("401"), True, Step.FAIL_OVER),
        (ProviderAccessDenied("403"), True, Step.FAIL_OVER),
        (ProviderProtocolError("bad event"), True, Step.FAIL_OVER),
        (ContentRejected("policy", "content_policy_violation"), True, Step.REFUSE),
        (InvalidRequest("bad temperature"), True, Step.REFUSE),
        (DeadlineExceeded("the call's"), True, Step.END),
        (ModelyardError("internal"), True, Step.END),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_each_error_has_one_step(error: ModelyardError, sent: bool, step: Step) -> None:
    assert step_after(error, sent=sent) is step


def test_full_jitter_is_uniform_up_to_the_capped_power_of_two() -> None:
    assert RULES.backoff_s(0, lambda: 0.0) == 0.0
    assert RULES.backoff_s(0, lambda: 0.5) == pytest.approx(0.05)
    assert RULES.backoff_s(3, lambda: 0.5) == pytest.approx(0.4)  # 0.1 * 8 / 2
    assert RULES.backoff_s(10, lambda: 0.999) == pytest.approx(1.998)  # capped at 2 s


def test_a_retry_waits_its_backoff_then_the_model_cap_ends_them() -> None:
    tries, _, _ = _tries(draw=0.5)
    tries.sending(MODEL)
    assert tries.retry_wait_s(BackendUnavailable("503"), MODEL, 2, 60.0) == pytest.approx(0.05)
    tries.sending(MODEL)
    assert tries.retry_wait_s(BackendUnavailable("503"), MODEL, 1, 60.0) is None  # 1 retry only


def test_the_upstreams_delay_wins_over_a_shorter_backoff() -> None:
    tries, _, _ = _tries(draw=0.5)
    tries.sending(MODEL)
    assert tries.retry_wait_s(RateLimited("429", 1.25), MODEL, 2, 60.0) == 1.25


@pytest.mark.parametrize(
    ("retry_after_s", "remaining_s"),
    [(2.5, 60.0), (1.0, 1.0), (1.0, 0.5)],
    ids=["over-the-longest-backoff", "exactly-the-deadline", "past-the-deadline"],
)
def test_a_delay_that_does_not_fit_fails_over_at_once(
    retry_after_s: float, remaining_s: float
) -> None:
    tries, _, _ = _tries()
    tries.sending(MODEL)
    exc = BackendUnavailable("503", retry_after_s)
    assert tries.retry_wait_s(exc, MODEL, 2, remaining_s) is None
    assert tries.retries_of_model == 0


def test_no_more_than_two_attempts_reach_one_upstream_within_1_5_s() -> None:
    tries, clock, _ = _tries(draw=0.0)
    tries.sending(MODEL)
    assert tries.retry_wait_s(BackendUnavailable("503"), MODEL, 3, 60.0) == 0.0
    clock.now += 0.2
    tries.sending(MODEL)
    clock.now += 0.1
    wait = tries.retry_wait_s(BackendUnavailable("503"), MODEL, 3, 60.0)
    assert wait == pytest.approx(1.2)  # 1.5 s after the first of the last two
    # Another upstream of the same call is not held back by it.
    tries.next_model()
    tries.sending("mistral/small")
    assert tries.retry_wait_s(BackendUnavailable("503"), "mistral/small", 3, 60.0) == 0.0


def test_the_call_cap_counts_every_attempt_sent() -> None:
    rules = RetryRules(max_attempts_per_call=2, base_backoff_s=0.1, max_backoff_s=2.0)
    tries, _, _ = _tries(rules=rules)
    tries.sending(MODEL)
    assert tries.may_attempt()
    tries.next_model()
    tries.sending("mistral/small")
    assert not tries.may_attempt()
    assert tries.retry_wait_s(BackendUnavailable("503"), "mistral/small", 5, 60.0) is None


def test_a_quiet_upstream_may_still_retry_a_few_times() -> None:
    budget = RetryBudget(0.2, 10.0)
    for _ in range(MIN_RETRIES_PER_WINDOW):
        assert budget.allows_retry(0.0)
        budget.retried(0.0)
    assert not budget.allows_retry(0.0)


def test_retries_stay_within_a_fifth_of_the_requests_over_the_window() -> None:
    budget = RetryBudget(0.2, 10.0)
    for _ in range(100):
        budget.requested(0.0)
    for _ in range(20):
        assert budget.allows_retry(1.0)
        budget.retried(1.0)
    assert not budget.allows_retry(1.0)
    assert budget.counts(9.9) == (100, 20)
    # The requests (t=0) leave the window before the retries (t=1) do: min 3 applies again.
    assert budget.counts(10.5) == (0, 20)
    assert not budget.allows_retry(10.5)
    assert budget.counts(11.5) == (0, 0)
    assert budget.allows_retry(11.5)


def test_a_budget_is_shared_by_an_upstreams_models_and_granted_retries_count_at_once() -> None:
    tries, _, budgets = _tries(draw=0.0)
    assert budgets.for_model("openai/a") is budgets.for_model("openai/b")
    assert budgets.for_model("openai/a") is not budgets.for_model("mistral/a")
    tries.sending("openai/a")
    assert tries.retry_wait_s(BackendUnavailable("503"), "openai/a", 2, 60.0) == 0.0
    budget = budgets.for_model("openai/b")
    assert budget.counts(1000.0) == (1, 1)  # granted, before it is sent
    tries.sending("openai/a")  # the retry itself is not counted again
    assert budget.counts(1000.0) == (1, 1)
