"""Load balancing among one model's deployments through `modelyard._native.DeploymentPool`."""

from __future__ import annotations

import math
import threading
from collections import Counter
from typing import Any

import pytest

from modelyard._native import STRATEGIES, DeploymentPool
from modelyard_client.errors import BackendUnavailable, InvalidRequest


def pool(n: int = 4, **options: Any) -> DeploymentPool:
    deployments = [(f"host{i}:50051", "eu" if i % 2 == 0 else "us", float(n - i)) for i in range(n)]
    return DeploymentPool(deployments, **options)


def fail(p: DeploymentPool, i: int, times: int, now: float) -> None:
    for _ in range(times):
        p.start(i)
        p.finish(i, 5.0, False, now=now)


def test_round_robin_and_least_loaded() -> None:
    p = pool(3)
    assert [p.pick("round_robin", now=0.0) for _ in range(4)] == [0, 1, 2, 0]
    p.start(0)
    p.start(1)
    assert p.pick("least_loaded", now=0.0) == 2
    assert p.stats(0) == (1, 0.0, 0.0, 0)


def test_cost_optimized_and_region_affinity() -> None:
    p = pool(4)
    assert p.pick("cost_optimized", now=0.0) == 3
    p.start(1)
    assert p.pick("region_affinity", "us", now=0.0) == 3
    p.set_healthy(1, False)
    p.set_healthy(3, False)
    assert p.pick("region_affinity", "us", now=0.0) in (0, 2)
    assert p.pick("cost_optimized", now=0.0) == 2


def test_p2c_prefers_fast_idle_deployments() -> None:
    p = pool(2, seed=7)
    p.start(0)
    p.finish(0, 400.0, True, now=0.0)
    p.start(1)
    p.finish(1, 20.0, True, now=0.0)
    assert {p.pick("p2c", now=0.0) for _ in range(50)} == {1}
    in_flight, ewma, _, _ = p.stats(0)
    assert (in_flight, ewma) == (0, 400.0)


def test_p2c_spreads_load_over_equal_deployments() -> None:
    p = pool(10, seed=1)
    counts = Counter(p.pick("p2c", now=0.0) for _ in range(10_000))
    assert set(counts) == set(range(10))
    assert min(counts.values()) > 700


def probe(p: DeploymentPool, i: int, ok: bool, now: float) -> None:
    """Deployment `i`'s probe: the pick at `now` hands it out, and it ends at `now`."""
    assert p.pick("least_loaded", now=now) == i
    p.start(i)
    p.finish(i, 5.0, ok, now=now)


def test_ejection_after_consecutive_failures_with_backoff() -> None:
    p = pool(4, consecutive_failures=3, base_ejection_s=10.0, max_ejection_s=25.0)
    fail(p, 0, 3, now=100.0)
    assert p.stats(0)[2] == 110.0
    for _ in range(20):
        assert p.pick("round_robin", now=105.0) != 0
    probe(p, 0, False, now=110.0)
    assert p.stats(0)[2] == 130.0  # 10 s doubled
    probe(p, 0, False, now=130.0)
    assert p.stats(0)[2] == 155.0  # capped at 25 s


def test_by_default_the_fifth_failure_in_a_row_ejects_for_30_seconds_and_never_longer() -> None:
    # The gateway's CircuitPolicy (gateway/balancing.py) spells the same defaults; these
    # pin the pool's own: 5 failures, 30 s, at most 30 s, a probe may take 60 s.
    p = pool(4)
    fail(p, 0, 4, now=100.0)
    assert p.stats(0) == (0, 5.0, 0.0, 4)
    fail(p, 0, 1, now=100.0)
    assert p.stats(0) == (0, 5.0, 130.0, 0)
    ends = []
    for _ in range(3):
        now = p.stats(0)[2]
        probe(p, 0, False, now=now)
        ends.append(p.stats(0)[2] - now)
    assert ends == [30.0, 30.0, 30.0]
    now = p.stats(0)[2]
    assert p.pick("least_loaded", now=now) == 0  # a probe that never finishes
    assert p.state(0, now=now + 59.9) == "half_open"
    assert p.state(0, now=now + 60.0) == "open"


def test_by_default_half_a_pool_may_be_ejected_and_a_sample_weighs_0_3() -> None:
    p = pool(4)
    for i in range(4):
        fail(p, i, 5, now=0.0)
    assert [p.stats(i)[2] for i in range(4)] == [30.0, 30.0, 0.0, 0.0]
    p.finish(2, 105.0, True, now=0.0)
    assert p.stats(2)[1] == pytest.approx(0.3 * 105.0 + 0.7 * 5.0)


def test_ejection_share_is_capped() -> None:
    p = pool(4, consecutive_failures=1, max_ejected_share=0.5)
    for i in range(4):
        fail(p, i, 1, now=0.0)
    ejected = [i for i in range(4) if p.stats(i)[2] > 0.0]
    assert len(ejected) == 2
    for strategy in STRATEGIES:
        assert p.pick(strategy, now=1.0) not in ejected


def test_no_usable_deployment_raises_backend_unavailable() -> None:
    p = pool(2, consecutive_failures=1)
    p.set_healthy(1, False)
    fail(p, 0, 1, now=0.0)
    for strategy in STRATEGIES:
        with pytest.raises(BackendUnavailable, match="among 2: 1 unhealthy, 1 ejected"):
            p.pick(strategy, now=1.0)
    assert p.pick("least_loaded", now=30.0) == 0


def test_bad_input_raises_invalid_request() -> None:
    p = pool(2)
    with pytest.raises(InvalidRequest, match=r"unknown strategy 'fastest'; valid: round_robin, "):
        p.pick("fastest")
    with pytest.raises(InvalidRequest, match="deployment index 2 is out of range for a pool of 2"):
        p.start(2)
    with pytest.raises(InvalidRequest, match="deployment index -1"):
        p.finish(-1, 1.0, True)
    with pytest.raises(InvalidRequest, match="latency_ms"):
        p.finish(0, math.nan, True)
    with pytest.raises(InvalidRequest, match="now must be a finite number"):
        p.pick("p2c", now=math.inf)
    with pytest.raises(InvalidRequest, match="no deployments"):
        DeploymentPool([])
    with pytest.raises(InvalidRequest, match="usd_cost"):
        DeploymentPool([("h", "eu", -1.0)])
    with pytest.raises(
        InvalidRequest, match="consecutive_failures must be an integer >= 1, got -3"
    ):
        pool(consecutive_failures=-3)
    with pytest.raises(InvalidRequest, match="max_ejected_share"):
        pool(max_ejected_share=1.5)
    with pytest.raises(InvalidRequest, match="max_ejection_s"):
        pool(base_ejection_s=60.0, max_ejection_s=30.0)
    with pytest.raises(InvalidRequest, match="ewma_alpha"):
        pool(ewma_alpha=0.0)


def test_finish_without_start_never_goes_negative() -> None:
    p = pool(1)
    p.finish(0, 10.0, True, now=0.0)
    assert p.stats(0)[0] == 0
    assert len(p) == 1 and p.endpoint(0) == "host0:50051"


def test_default_clock_and_threads() -> None:
    """Four Python threads on one pool, on the process clock, keep exact counts.

    It can show that the binding is callable from many Python threads and that
    every start is matched by its finish. It cannot show a race: the binding holds
    the GIL through each call (a pick is ~0.1-0.3 µs, less than releasing it is
    worth), so calls never overlap; the Rust test in native/src/py/balancer.rs
    calls the binding's methods from OS threads that do.
    """
    p = pool(8)

    def work() -> None:
        for _ in range(2000):
            i = p.pick("least_loaded")
            p.start(i)
            p.finish(i, 1.0, True)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Idle, every deployment reached by the rotation, no failure, never ejected.
    assert [p.stats(i) for i in range(8)] == [(0, 1.0, 0.0, 0)] * 8
