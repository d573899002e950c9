"""`DeploymentPool`'s circuits through the binding: closed, open, half-open with one probe."""

from __future__ import annotations

from typing import Any

import pytest

from modelyard._native import STRATEGIES, DeploymentPool
from modelyard_client.errors import BackendUnavailable, InvalidRequest


def pool(n: int, **options: Any) -> DeploymentPool:
    """`n` deployments, deployment 0 the dearest; any share of them may be out."""
    deployments = [(f"host{i}:50051", "eu", float(n - i)) for i in range(n)]
    options = {"consecutive_failures": 2, "max_ejected_share": 1.0, **options}
    return DeploymentPool(deployments, **options)


def call(p: DeploymentPool, i: int, ok: bool, now: float, latency_ms: float = 5.0) -> None:
    p.start(i)
    p.finish(i, latency_ms, ok, now=now)


def opened_at(p: DeploymentPool, i: int, now: float) -> None:
    """Two failures in a row open deployment `i`'s circuit at `now`."""
    call(p, i, False, now)
    assert p.state(i, now=now) == "closed"
    call(p, i, False, now)
    assert p.state(i, now=now) == "open"


def test_state_goes_closed_open_half_open_closed() -> None:
    p = pool(2, base_ejection_s=10.0, max_ejection_s=40.0)
    assert p.state(0, now=0.0) == "closed"
    opened_at(p, 0, now=100.0)
    assert [p.state(0, now=t) for t in (100.0, 109.99, 110.0)] == ["open", "open", "half_open"]
    assert p.pick("cost_optimized", now=110.0) == 0  # the probe, though the dearest
    assert p.state(0, now=110.5) == "half_open"
    call(p, 0, True, now=111.0)
    assert p.state(0, now=111.0) == "closed"
    assert p.stats(0) == (0, 5.0, 110.0, 0)


def test_one_caller_gets_the_probe_and_the_others_are_served_elsewhere() -> None:
    p = pool(3, base_ejection_s=10.0)
    opened_at(p, 0, now=0.0)
    assert p.pick("round_robin", now=10.0) == 0
    for strategy in STRATEGIES:
        assert {p.pick(strategy, "eu", now=10.5) for _ in range(20)} <= {1, 2}, strategy


def test_a_lone_deployments_probe_leaves_none_for_concurrent_callers() -> None:
    p = pool(1, base_ejection_s=1.0)
    opened_at(p, 0, now=0.0)
    with pytest.raises(BackendUnavailable, match="among 1: 0 unhealthy, 1 ejected"):
        p.pick("least_loaded", now=0.5)
    assert p.pick("least_loaded", now=1.0) == 0
    for strategy in STRATEGIES:
        with pytest.raises(BackendUnavailable, match="among 1: 0 unhealthy, 1 ejected"):
            p.pick(strategy, now=1.0)


def test_failed_probes_double_the_open_period_up_to_the_cap() -> None:
    p = pool(1, base_ejection_s=1.0, max_ejection_s=5.0)
    opened_at(p, 0, now=0.0)
    periods = [p.stats(0)[2]]
    for _ in range(4):
        now = p.stats(0)[2]
        assert p.pick("p2c", now=now) == 0
        call(p, 0, False, now=now + 0.25, latency_ms=250.0)
        periods.append(p.stats(0)[2] - (now + 0.25))
    assert periods == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_a_good_probe_closes_and_the_next_outage_starts_at_base_again() -> None:
    p = pool(2, base_ejection_s=1.0, max_ejection_s=8.0)
    opened_at(p, 0, now=0.0)
    for now in (1.0, 3.0, 7.0):  # 1, 2, 4 s open
        assert p.pick("round_robin", now=now) == 0
        call(p, 0, False, now=now)
    assert p.pick("round_robin", now=15.0) == 0  # after 8 s
    call(p, 0, True, now=15.0)
    assert p.state(0, now=15.0) == "closed"
    call(p, 0, False, now=20.0)
    assert p.state(0, now=20.0) == "closed"  # two in a row again, not one
    call(p, 0, False, now=20.0)
    assert p.stats(0)[2] == 21.0


def test_a_call_older_than_the_opening_does_not_decide_for_the_probe() -> None:
    p = pool(2, base_ejection_s=10.0)
    p.start(0)  # in flight from 0 s
    opened_at(p, 0, now=1.0)
    assert p.pick("least_loaded", now=11.0) == 0
    p.start(0)
    p.finish(0, 12_000.0, True, now=12.0)  # began at 0 s: the old call
    assert p.state(0, now=12.0) == "half_open"
    p.finish(0, 1_000.0, True, now=12.0)  # began at 11 s: the probe
    assert p.state(0, now=12.0) == "closed"


def test_a_probe_that_never_finishes_times_out_into_the_next_open_period() -> None:
    p = pool(1, base_ejection_s=1.0, max_ejection_s=8.0, probe_timeout_s=3.0)
    opened_at(p, 0, now=0.0)
    assert p.pick("least_loaded", now=1.0) == 0  # never finished
    assert p.state(0, now=3.99) == "half_open"
    assert p.state(0, now=4.0) == "open"  # failed at 1 + 3 s, then out for 2 s
    assert p.state(0, now=5.99) == "open"
    assert p.pick("least_loaded", now=6.0) == 0


def test_a_trip_opens_a_closed_circuit_once_within_the_cap() -> None:
    p = pool(2, base_ejection_s=10.0, max_ejection_s=40.0, max_ejected_share=0.5)
    assert p.trip(0, now=100.0) is True
    assert [p.state(0, now=t) for t in (100.0, 109.99, 110.0)] == ["open", "open", "half_open"]
    assert p.trip(0, now=100.0) is False  # not closed: nothing to open
    assert p.trip(1, now=100.0) is False  # half of two may be out: one is
    assert p.state(1, now=100.0) == "closed"
    assert p.pick("cost_optimized", now=110.0) == 0  # the probe follows, as after failures
    call(p, 0, False, now=110.0)
    assert p.state(0, now=129.99) == "open"  # a failed probe doubles the period
    with pytest.raises(InvalidRequest, match="deployment index 2 is out of range"):
        p.trip(2)
    with pytest.raises(InvalidRequest, match="now must be a finite number, got inf"):
        p.trip(1, now=float("inf"))


def test_bad_circuit_arguments_raise_invalid_request() -> None:
    with pytest.raises(InvalidRequest, match="probe_timeout_s must be a finite number > 0, got 0"):
        pool(1, probe_timeout_s=0.0)
    with pytest.raises(InvalidRequest, match="deployment index 1 is out of range for a pool of 1"):
        pool(1).state(1)
    with pytest.raises(InvalidRequest, match="now must be a finite number, got NaN"):
        pool(1).state(0, now=float("nan"))
    assert pool(1).state(0) == "closed"  # on the process clock
