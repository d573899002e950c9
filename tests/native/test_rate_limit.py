"""The native rate limiter seen from Python: `modelyard._native`.

Every call passes `now` explicitly so the timelines are exact; one test covers the
default clock.
"""

from __future__ import annotations

import math
import threading

import pytest

from modelyard._native import RateLimit, TokenBucket
from modelyard.errors import InvalidRequest, ModelyardError


def test_bucket_admits_up_to_capacity_then_says_how_long_to_wait() -> None:
    bucket = TokenBucket(10.0, 2.0)
    assert bucket.try_take(6, now=0.0) == 0.0
    assert bucket.try_take(4, now=0.0) == 0.0
    assert bucket.try_take(3, now=0.0) == pytest.approx(1.5)
    # A rejection takes nothing.
    assert bucket.available(now=0.0) == 0.0


def test_bucket_refills_over_time_up_to_capacity() -> None:
    bucket = TokenBucket(5.0, 1.0)
    bucket.try_take(5.0, 100.0)
    assert bucket.available(102.0) == pytest.approx(2.0)
    assert bucket.try_take(3.0, 102.0) == pytest.approx(1.0)
    assert bucket.try_take(3.0, 103.0) == 0.0
    assert bucket.available(10_000.0) == 5.0


def test_bucket_clock_going_backwards_adds_nothing() -> None:
    bucket = TokenBucket(10.0, 1.0)
    bucket.try_take(10.0, 100.0)
    assert bucket.available(50.0) == 0.0
    assert bucket.available(103.0) == pytest.approx(3.0)


def test_bucket_give_back_is_capped_at_capacity() -> None:
    bucket = TokenBucket(10.0, 0.0)
    bucket.try_take(4.0, 0.0)
    bucket.give_back(3.0, 0.0)
    assert bucket.available(0.0) == 9.0
    bucket.give_back(1e300, 0.0)
    assert bucket.available(0.0) == 10.0


def test_bucket_that_never_refills_waits_forever() -> None:
    bucket = TokenBucket(1.0, 0.0)
    bucket.try_take(1.0, 0.0)
    assert bucket.try_take(1.0, 1e9) == math.inf


def test_properties_are_read_only() -> None:
    bucket = TokenBucket(3.0, 0.5)
    limit = RateLimit(requests_per_minute=60, tokens_per_minute=4000)
    assert (bucket.capacity, bucket.refill_per_second) == (3.0, 0.5)
    assert (limit.requests_per_minute, limit.tokens_per_minute) == (60.0, 4000.0)
    with pytest.raises(AttributeError):
        limit.tokens_per_minute = 1.0  # type: ignore[misc]
    assert repr(limit) == "RateLimit(requests_per_minute=60.0, tokens_per_minute=4000.0)"


def test_rate_limit_admits_a_burst_then_returns_retry_after() -> None:
    limit = RateLimit(requests_per_minute=3)
    assert [limit.try_acquire(0, now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    # One request accrues every 20 s.
    assert limit.try_acquire(0, now=0.0) == pytest.approx(20.0)
    assert limit.try_acquire(0, now=5.0) == pytest.approx(15.0)
    assert limit.try_acquire(0, now=20.0) == 0.0


def test_waiting_exactly_the_retry_after_is_enough() -> None:
    limit = RateLimit(tokens_per_minute=1000)
    limit.try_acquire(1000, now=0.0)
    wait = limit.try_acquire(333, now=0.0)
    assert wait > 0
    assert limit.try_acquire(333, now=wait) == 0.0


def test_rejected_for_tokens_does_not_spend_a_request() -> None:
    limit = RateLimit(requests_per_minute=2, tokens_per_minute=600)
    assert limit.try_acquire(500, now=0.0) == 0.0
    # 100 tokens left at 10 per second: 300 need 20 s more.
    assert limit.try_acquire(300, now=0.0) == pytest.approx(20.0)
    # The rejected call left the second request slot in place.
    assert limit.try_acquire(100, now=0.0) == 0.0
    assert limit.try_acquire(0, now=0.0) == pytest.approx(30.0)


def test_wait_is_the_longer_of_the_two_limits() -> None:
    limit = RateLimit(requests_per_minute=1, tokens_per_minute=60)
    limit.try_acquire(30, now=0.0)
    # Requests: next in 60 s; tokens: 30 more in 30 s.
    assert limit.try_acquire(60, now=0.0) == pytest.approx(60.0)


def test_refund_returns_tokens_but_not_the_request() -> None:
    limit = RateLimit(requests_per_minute=2, tokens_per_minute=1000)
    limit.try_acquire(800, now=0.0)
    assert limit.try_acquire(700, now=0.0) > 0
    limit.refund(500, now=0.0)
    assert limit.try_acquire(700, now=0.0) == 0.0
    # Both request slots are now spent, refund or not.
    limit.refund(10**9, now=0.0)
    assert limit.try_acquire(1, now=0.0) == pytest.approx(30.0)


def test_zero_means_unlimited() -> None:
    limit = RateLimit()
    assert all(limit.try_acquire(2**64 - 1, now=0.0) == 0.0 for _ in range(10_000))
    limit.refund(5, now=0.0)


def test_default_clock_is_monotonic_seconds() -> None:
    bucket = TokenBucket(2.0, 1e-9)
    assert bucket.try_take(2.0) == 0.0
    assert bucket.try_take(1.0) > 1e8
    assert 0.0 <= bucket.available() < 1e-3
    assert RateLimit(requests_per_minute=1).try_acquire(0) == 0.0


@pytest.mark.parametrize(
    ("capacity", "refill", "message"),
    [
        (math.nan, 1.0, "capacity must be a finite number > 0, got NaN"),
        (0.0, 1.0, "capacity must be a finite number > 0, got 0"),
        (-1.0, 1.0, "capacity must be a finite number > 0, got -1"),
        (math.inf, 1.0, "capacity must be a finite number > 0, got inf"),
        (1.0, -0.5, "refill rate must be a finite number >= 0, got -0.5"),
        (1.0, math.nan, "refill rate must be a finite number >= 0, got NaN"),
    ],
)
def test_bad_bucket_parameters_raise_invalid_request(
    capacity: float, refill: float, message: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        TokenBucket(capacity, refill)
    assert str(caught.value) == message
    assert caught.value.message == message


@pytest.mark.parametrize(
    ("rpm", "tpm", "message"),
    [
        (-1, 0, "requests_per_minute must be 0 (unlimited) or a finite number >= 1, got -1"),
        (0.5, 0, "requests_per_minute must be 0 (unlimited) or a finite number >= 1, got 0.5"),
        (math.nan, 0, "requests_per_minute must be 0 (unlimited) or a finite number >= 1, got NaN"),
        (0, math.inf, "tokens_per_minute must be 0 (unlimited) or a finite number > 0, got inf"),
        (0, -5, "tokens_per_minute must be 0 (unlimited) or a finite number > 0, got -5"),
    ],
)
def test_bad_limits_raise_invalid_request(rpm: float, tpm: float, message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        RateLimit(requests_per_minute=rpm, tokens_per_minute=tpm)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        (5000, "request needs 5000 tokens but the limit allows at most 4000 per minute"),
        (10**30, "request needs 1e30 tokens but the limit allows at most 4000 per minute"),
        (-1, "tokens must be a finite number >= 0, got -1"),
        (10**400, "tokens must be a finite number >= 0, got inf"),
        (-(10**400), "tokens must be a finite number >= 0, got -inf"),
    ],
)
def test_bad_token_counts_raise_invalid_request(tokens: int, message: str) -> None:
    limit = RateLimit(requests_per_minute=60, tokens_per_minute=4000)
    with pytest.raises(InvalidRequest) as caught:
        limit.try_acquire(tokens, now=0.0)
    assert str(caught.value) == message
    # Nothing was spent by the failed calls.
    assert limit.try_acquire(4000, now=0.0) == 0.0


def test_bad_amounts_and_times_raise_invalid_request() -> None:
    bucket = TokenBucket(10.0, 1.0)
    with pytest.raises(InvalidRequest, match="amount must be a finite number >= 0, got NaN"):
        bucket.try_take(math.nan, now=0.0)
    with pytest.raises(InvalidRequest, match="amount 11 exceeds the bucket capacity of 10"):
        bucket.try_take(11.0, now=0.0)
    with pytest.raises(InvalidRequest, match="amount must be a finite number >= 0, got -1"):
        bucket.give_back(-1.0, now=0.0)
    with pytest.raises(InvalidRequest, match="time must be a finite number, got NaN"):
        bucket.available(now=math.nan)
    with pytest.raises(InvalidRequest, match="tokens must be a finite number >= 0, got -3"):
        RateLimit(tokens_per_minute=10).refund(-3, now=0.0)
    with pytest.raises(InvalidRequest, match="time must be a finite number, got inf"):
        RateLimit(requests_per_minute=1).try_acquire(1, now=math.inf)
    # Huge but finite clock readings are fine.
    assert bucket.try_take(1.0, now=1e300) == 0.0


def test_errors_are_the_project_hierarchy_not_value_error() -> None:
    with pytest.raises(ModelyardError) as caught:
        TokenBucket(-1.0, 0.0)
    assert type(caught.value) is InvalidRequest
    assert not isinstance(caught.value, ValueError)


def test_non_int_token_count_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        RateLimit().try_acquire(1.5, now=0.0)  # type: ignore[arg-type]


def test_threads_sharing_one_limit_never_admit_more_than_capacity() -> None:
    # 10_000 tokens at 30 per request: 333 fit, fewer than the 500 request slots.
    limit = RateLimit(requests_per_minute=500, tokens_per_minute=10_000)
    admitted = [0] * 8
    start = threading.Barrier(len(admitted))

    def hammer(slot: int) -> None:
        start.wait()
        for _ in range(5_000):
            if limit.try_acquire(30, now=0.0) == 0.0:
                admitted[slot] += 1

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(len(admitted))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(admitted) == 333
