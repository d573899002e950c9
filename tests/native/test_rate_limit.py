"""The native token bucket seen from Python: `modelyard._native.TokenBucket`, which
holds the gateway's in-process rate limits (`modelyard.ratelimit.local`).

Every call passes `now` explicitly so the timelines are exact; one test covers the
default clock.
"""

from __future__ import annotations

import math
import threading

import pytest

from modelyard._native import TokenBucket
from modelyard_client.errors import InvalidRequest, ModelyardError


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


def test_bucket_reports_its_parameters() -> None:
    bucket = TokenBucket(3.0, 0.5)
    assert (bucket.capacity, bucket.refill_per_second) == (3.0, 0.5)
    assert repr(bucket) == "TokenBucket(capacity=3.0, refill_per_second=0.5)"


def test_waiting_exactly_the_returned_wait_is_enough() -> None:
    bucket = TokenBucket(1000.0, 1000.0 / 60)
    bucket.try_take(1000.0, now=0.0)
    wait = bucket.try_take(333.0, now=0.0)
    assert wait > 0
    assert bucket.try_take(333.0, now=wait) == 0.0


def test_default_clock_is_monotonic_seconds() -> None:
    bucket = TokenBucket(2.0, 1e-9)
    assert bucket.try_take(2.0) == 0.0
    assert bucket.try_take(1.0) > 1e8
    assert 0.0 <= bucket.available() < 1e-3


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
    ("amount", "message"),
    [
        (5000.0, "amount 5000 exceeds the bucket capacity of 4000"),
        (1e30, "amount 1e30 exceeds the bucket capacity of 4000"),
        (-1.0, "amount must be a finite number >= 0, got -1"),
        (math.inf, "amount must be a finite number >= 0, got inf"),
        (-math.inf, "amount must be a finite number >= 0, got -inf"),
    ],
)
def test_bad_amounts_raise_invalid_request_and_take_nothing(amount: float, message: str) -> None:
    bucket = TokenBucket(4000.0, 0.0)
    with pytest.raises(InvalidRequest) as caught:
        bucket.try_take(amount, now=0.0)
    assert str(caught.value) == message
    assert bucket.available(now=0.0) == 4000.0


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
    with pytest.raises(InvalidRequest, match="time must be a finite number, got inf"):
        bucket.give_back(1.0, now=math.inf)
    # Huge but finite clock readings are fine.
    assert bucket.try_take(1.0, now=1e300) == 0.0


def test_errors_are_the_project_hierarchy_not_value_error() -> None:
    with pytest.raises(ModelyardError) as caught:
        TokenBucket(-1.0, 0.0)
    assert type(caught.value) is InvalidRequest
    assert not isinstance(caught.value, ValueError)


def test_threads_sharing_one_bucket_never_take_more_than_capacity() -> None:
    """Python threads sharing one bucket get exactly what it holds.

    It can show that the binding is callable from many Python threads with exact
    accounting and no "already borrowed" error. It cannot show a race: the binding
    holds the GIL through each call (releasing it would cost more than the ~80 ns
    decision), so the calls never overlap. The Rust test of the same name in
    native/src/py/token_bucket.rs hammers the binding's lock from OS threads that
    do overlap.
    """
    # 10_000 units at 30 per take: 333 fit, and the bucket never refills.
    bucket = TokenBucket(10_000.0, 0.0)
    admitted = [0] * 8
    start = threading.Barrier(len(admitted))

    def hammer(slot: int) -> None:
        start.wait()
        for _ in range(5_000):
            if bucket.try_take(30.0, now=0.0) == 0.0:
                admitted[slot] += 1

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(len(admitted))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(admitted) == 333
    assert bucket.available(now=0.0) == 10.0
