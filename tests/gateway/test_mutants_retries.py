"""The retry rules (`gateway/retries.py`) at the edges mutation testing found unchecked
(docs/testing.md): a delay of exactly the longest backoff, an error that names no delay,
the model's cap counted retry by retry, a fallback's own first attempt, a rate limit
before anything was sent, ids with a `/` in the model's name, what an attempt that sent
nothing reports, and the budget's window after a long quiet spell. On a fake clock and a
fixed draw, so every wait is exact.
"""

from __future__ import annotations

import pytest
from gateway.test_retries import MODEL, RULES, Clock  # the same rules and fake clock

from modelyard.gateway.retries import (
    CallTries,
    RetryBudget,
    RetryBudgets,
    Step,
    step_after,
    upstream_of,
)
from modelyard_client.errors import BackendUnavailable, RateLimited, StreamTruncated


def _tries(draw: float = 0.5) -> tuple[CallTries, Clock, RetryBudgets]:
    clock = Clock()
    budgets = RetryBudgets(RULES, clock, lambda: draw)
    return CallTries(budgets), clock, budgets


def test_a_rate_limit_before_anything_was_sent_fails_over() -> None:
    assert step_after(RateLimited("the gateway's own", 1.0), sent=False) is Step.FAIL_OVER
    assert step_after(RateLimited("429", 1.0), sent=True) is Step.RETRY


def test_an_error_that_names_no_delay_waits_its_backoff_alone() -> None:
    tries, _, _ = _tries(draw=0.5)
    tries.sending(MODEL)
    exc = StreamTruncated("the stream ended before its first chunk")
    assert tries.retry_wait_s(exc, MODEL, 2, 60.0) == pytest.approx(0.05)
    assert tries.retries_of_model == 1


def test_a_delay_of_exactly_the_longest_backoff_is_waited() -> None:
    tries, _, _ = _tries(draw=0.5)
    tries.sending(MODEL)
    assert tries.retry_wait_s(BackendUnavailable("503", 2.0), MODEL, 2, 60.0) == 2.0
    assert tries.retries_of_model == 1


def test_a_model_is_retried_as_often_as_its_cap_each_retry_backing_off_further() -> None:
    tries, clock, budgets = _tries(draw=0.5)
    exc = BackendUnavailable("503")
    tries.sending(MODEL)
    assert tries.retry_wait_s(exc, MODEL, 2, 60.0) == pytest.approx(0.05)  # 0.1 * 1 / 2
    clock.now += 2.0  # past the 1.5 s spacing: only the backoff counts
    tries.sending(MODEL)
    assert tries.retry_wait_s(exc, MODEL, 2, 60.0) == pytest.approx(0.1)  # 0.1 * 2 / 2
    assert tries.retries_of_model == 2
    clock.now += 2.0
    tries.sending(MODEL)
    assert tries.retry_wait_s(exc, MODEL, 2, 60.0) is None  # 1 + 2 attempts: the cap
    assert tries.retries_of_model == 2
    assert tries.sent == 3
    assert budgets.for_model(MODEL).counts(clock.now) == (1, 2)


def test_a_fallback_gets_its_own_first_attempt_and_first_retry() -> None:
    tries, clock, budgets = _tries(draw=0.5)
    exc = BackendUnavailable("503")
    tries.sending(MODEL)
    assert tries.retry_wait_s(exc, MODEL, 1, 60.0) == pytest.approx(0.05)
    tries.sending(MODEL)
    assert tries.retry_wait_s(exc, MODEL, 1, 60.0) is None
    tries.next_model()
    assert tries.retries_of_model == 0
    fallback = "mistral/small"
    tries.sending(fallback)
    assert budgets.for_model(fallback).counts(clock.now) == (1, 0)  # a request, not a retry
    assert tries.retry_wait_s(exc, fallback, 1, 60.0) == pytest.approx(0.05)  # backoff(0)
    assert budgets.for_model(fallback).counts(clock.now) == (1, 1)


def test_an_upstream_is_the_ids_backend_name_even_when_the_model_name_holds_a_slash() -> None:
    model = "openrouter/meta-llama/llama-3.1-8b-instruct:free"
    assert upstream_of(model) == "openrouter"
    assert upstream_of(MODEL) == "openai"
    budgets = RetryBudgets(RULES, Clock(), lambda: 0.0)
    assert budgets.for_model(model) is budgets.for_model("openrouter/mistral/small")
    assert budgets.for_model(model) is not budgets.for_model("meta-llama/llama-3.1-8b")


def test_a_call_and_an_attempt_that_sent_nothing_say_so() -> None:
    tries, _, _ = _tries()
    assert tries.reached_backend is False
    tries.starting()
    assert tries.reached_backend is False
    tries.sending(MODEL)
    assert tries.reached_backend is True
    tries.starting()  # the next attempt: nothing of it sent yet
    assert tries.reached_backend is False


def test_a_quiet_spell_longer_than_the_window_forgets_every_bucket() -> None:
    budget = RetryBudget(0.2, 10.0)  # ten buckets of 1 s
    budget.requested(1.0)
    budget.retried(1.0)
    assert budget.counts(10.9) == (1, 1)  # t=1 is still in the window ending at 10.9
    budget2 = RetryBudget(0.2, 10.0)
    budget2.requested(1.0)
    budget2.retried(1.0)
    assert budget2.counts(20.0) == (0, 0)  # 19 buckets later: every bucket emptied


def test_a_bucket_emptied_by_the_window_counts_from_zero_when_used_again() -> None:
    budget = RetryBudget(0.2, 10.0)
    budget.requested(0.0)
    budget.retried(0.0)
    assert budget.counts(10.0) == (0, 0)  # bucket 0 left the window
    budget.requested(10.0)  # the same bucket, ten seconds on
    budget.retried(10.0)
    assert budget.counts(15.0) == (1, 1)
    assert budget.counts(20.0) == (0, 0)
    assert budget.allows_retry(20.0)


def test_a_window_of_two_and_a_half_seconds_forgets_a_request_that_much_later() -> None:
    budget = RetryBudget(0.2, 2.5)  # ten buckets of 0.25 s
    budget.requested(0.0)
    budget.retried(0.25)
    assert budget.counts(2.4) == (1, 1)
    assert budget.counts(2.5) == (0, 1)  # the bucket of t=0 left the window
    assert budget.counts(2.75) == (0, 0)
