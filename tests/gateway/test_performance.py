"""The live performance tracker: exact figures of a known window, what a stack's calls
record, the write-back to the registry, and selection following the live figures."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import grpc
import pytest
from conftest import StackFactory
from support.clock import Clock
from support.scripted_engine import ScriptedEngine

from modelyard.assembly.stack import Stack
from modelyard.config import parse_config
from modelyard.gateway.performance import PerformanceTracker, Sample, figures_of
from modelyard.percentiles import nearest_rank
from modelyard_client.errors import BackendUnavailable, ProviderProtocolError, error_from_rpc
from modelyard_client.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
)


def _known_window(clock: Clock, tracker: PerformanceTracker) -> None:
    """10 answers taking 10..100 ms, first piece 5 ms in, 11 output tokens, $0.001 each;
    2 failures of 1 s, all ending at t=100 on deployment a (the failures on b)."""
    clock.now = 100.0
    for i in range(1, 11):
        started = 100.0 - 0.01 * i
        tracker.record("p/m", "p", "a:1", started, started + 0.005, 11, True, 0.001)
    for _ in range(2):
        tracker.record("p/m", "p", "b:1", 99.0, 0.0, 0, False, 0.0)


def test_the_figures_of_a_known_window_are_exact() -> None:
    clock = Clock()
    tracker = PerformanceTracker(clock=clock)
    _known_window(clock, tracker)
    f = tracker.figures("p/m")
    assert (f.requests, f.errors) == (12, 2) and f.error_rate == pytest.approx(2 / 12)
    # Nearest rank over the answers' latencies 10, 20, ... 100 ms.
    assert f.latency_ms_p50 == pytest.approx(50.0)
    assert f.latency_ms_p95 == pytest.approx(100.0)
    assert f.latency_ms_p99 == pytest.approx(100.0)
    assert f.ttft_ms_p50 == pytest.approx(5.0) and f.ttft_ms_p95 == pytest.approx(5.0)
    # 10 tokens after the first piece each, over (10i - 5) ms: 100 tokens in 0.5 s.
    assert f.tokens_per_second == pytest.approx(200.0)
    assert f.cost_per_request_usd == pytest.approx(0.001)
    assert f.window_s == 60.0 and f.requests_per_second == pytest.approx(12 / 60)
    by_endpoint = tracker.deployment_figures("p/m")
    assert list(by_endpoint) == ["a:1", "b:1"]
    assert (by_endpoint["a:1"].requests, by_endpoint["a:1"].errors) == (10, 0)
    assert (by_endpoint["b:1"].requests, by_endpoint["b:1"].errors) == (2, 2)
    assert by_endpoint["b:1"].latency_ms_p50 == 0.0  # failures have no latency figure


def test_a_percentile_of_first_piece_waits_counts_closed_attempts_and_needs_20() -> None:
    clock = Clock(10.0)
    tracker = PerformanceTracker(clock=clock)
    for i in range(15):  # first pieces after 10..150 ms
        tracker.record(
            "p/m", "p", "a:1", clock.now - 0.5, clock.now - 0.5 + (i + 1) / 100, 2, True, 0.0
        )
    tracker.record("p/m", "p", "a:1", clock.now - 1, 0.0, 0, False, 0.0)  # no piece: no wait
    for _ in range(4):  # closed before a piece came (a hedge's loser): waited 400 ms at least
        tracker.closed_waiting("p/m", "p", clock.now - 0.4, clock.now)
    assert tracker.first_piece_wait("p/m", 50) is None  # 19 waits
    clock.now += 1.0
    tracker.closed_waiting("p/m", "p", clock.now - 0.4, clock.now)
    waits = sorted([(i + 1) / 100 for i in range(15)] + [0.4] * 5)
    assert tracker.first_piece_wait("p/m", 95) == pytest.approx(nearest_rank(waits, 95))
    assert nearest_rank(waits, 95) == pytest.approx(0.4)
    # Without the closed waits the slow starts would vanish and the delay fall to 150 ms.
    assert nearest_rank(sorted(w for w in waits if w < 0.4), 95) == pytest.approx(0.15)
    # Kept for a second, then computed afresh; attempts older than the window leave it.
    for _ in range(20):
        tracker.closed_waiting("p/m", "p", clock.now - 2.0, clock.now)
    assert tracker.first_piece_wait("p/m", 95) == pytest.approx(0.4)
    clock.now += 1.0
    assert tracker.first_piece_wait("p/m", 95) == pytest.approx(2.0)
    clock.now += tracker.window_s
    assert tracker.first_piece_wait("p/m", 95) is None
    assert tracker.first_piece_wait("p/unknown", 95) is None


def test_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert [nearest_rank(values, q) for q in (50, 95, 99, 100)] == [50.0, 95.0, 99.0, 100.0]
    assert nearest_rank([7.0], 50) == 7.0 and nearest_rank([], 50) == 0.0


def test_attempts_leave_the_window_by_age_and_by_count() -> None:
    clock = Clock()
    tracker = PerformanceTracker(window_s=60.0, max_samples=3, clock=clock)
    clock.now = 10.0
    for _ in range(5):
        tracker.record("p/m", "p", "a:1", 9.9, 9.95, 2, True, 0.0)
    assert tracker.figures("p/m").requests == 3  # the newest 3
    assert tracker.figures("p/m").window_s == 10.0  # the tracker is 10 s old
    clock.now = 69.0
    tracker.record("p/n", "p", "a:1", 68.5, 0.0, 0, False, 0.0)
    assert tracker.model_ids() == ["p/m", "p/n"]
    clock.now = 70.5  # p/m's attempts ended at 10: out since t=70
    assert tracker.model_ids() == ["p/n"] and tracker.figures("p/m").requests == 0
    assert tracker.deployment_figures("p/m") == {}
    assert not tracker.recorded("p/m") and tracker.recorded("p/n")


def test_a_stream_without_a_second_token_adds_no_decode_time() -> None:
    one_token = Sample(1.0, 0.2, 0.1, 0, 0.0, True, 0.0)
    decoding = Sample(1.0, 0.3, 0.1, 4, 0.2, True, 0.0)
    assert figures_of([one_token, decoding], 60).tokens_per_second == pytest.approx(20.0)


def test_the_profile_keeps_the_cold_start_and_what_the_window_did_not_measure() -> None:
    clock = Clock()
    tracker = PerformanceTracker(clock=clock)
    clock.now = 5.0
    tracker.record("p/m", "p", "a:1", 4.0, 0.0, 0, False, 0.0)
    entry = common_pb2.PerformanceProfile(
        cold_start_ms=1500, latency_ms_p50=40, latency_ms_p95=90, tokens_per_second=33
    )
    profile = tracker.figures("p/m").profile(entry)
    assert profile == common_pb2.PerformanceProfile(
        cold_start_ms=1500,
        latency_ms_p50=40,
        latency_ms_p95=90,
        tokens_per_second=33,
        error_rate=1.0,
        samples=1,
    )


# ---- through a stack ------------------------------------------------------------------


def _request(model: str = "") -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=model)
    request.input.text = "hi"
    request.params.max_tokens = 8
    return request


async def test_each_attempt_of_the_calls_is_counted_per_model_deployment_and_provider(
    make_stack: StackFactory,
) -> None:
    good = ScriptedEngine(("scripted/good",))
    bad = ScriptedEngine(("scripted/bad",), fail_with=ProviderProtocolError("garbled answer"))
    cut = ScriptedEngine(
        ("scripted/cut",), fail_with=BackendUnavailable("connection reset"), fail_after=1
    )
    stack = await make_stack(roles=("registry", "gateway"), engines=[good, bad, cut])
    async with grpc.aio.insecure_channel(stack.address) as channel:
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        for _ in range(4):
            await gateway.Generate(_request("scripted/good"), timeout=10)
        for _ in range(3):
            with pytest.raises(grpc.aio.AioRpcError):
                await gateway.Generate(_request("scripted/bad"), timeout=10)
        with pytest.raises(grpc.aio.AioRpcError):  # cut after its first piece
            async for _ in gateway.GenerateStream(_request("scripted/cut"), timeout=10):
                pass
        with pytest.raises(grpc.aio.AioRpcError):  # refused before any backend call
            await gateway.Generate(_request("scripted/missing"), timeout=10)
        reply = await gateway.GetModelMetrics(gateway_pb2.GetModelMetricsRequest(), timeout=10)
        one = await gateway.GetModelMetrics(
            gateway_pb2.GetModelMetricsRequest(model="scripted/good"), timeout=10
        )
        providers = await gateway.GetProviderMetrics(
            gateway_pb2.GetProviderMetricsRequest(), timeout=10
        )
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await gateway.GetModelMetrics(
                gateway_pb2.GetModelMetricsRequest(model="scripted/missing"), timeout=10
            )
    by_id = {m.model_id: m for m in reply.models}
    assert list(by_id) == ["scripted/bad", "scripted/cut", "scripted/good"]
    counts = {m: (f.figures.requests, f.figures.errors) for m, f in by_id.items()}
    assert counts == {"scripted/good": (4, 0), "scripted/bad": (3, 3), "scripted/cut": (1, 1)}
    good_figures = by_id["scripted/good"].figures
    assert good_figures.error_rate == 0 and by_id["scripted/bad"].figures.error_rate == 1.0
    assert good_figures.latency_ms_p50 > 0 and good_figures.ttft_ms_p50 > 0
    assert 0 < good_figures.ttft_ms_p50 <= good_figures.latency_ms_p50
    assert good_figures.latency_ms_p50 <= good_figures.latency_ms_p95
    assert good_figures.latency_ms_p95 <= good_figures.latency_ms_p99
    assert good_figures.requests_per_second > 0 and good_figures.window_s > 0
    [deployment] = by_id["scripted/good"].deployments
    assert deployment.endpoint == stack.address and deployment.figures.requests == 4
    assert [m.model_id for m in one.models] == ["scripted/good"]
    assert one.models[0].figures.requests == 4
    [scripted] = providers.providers
    assert scripted.provider == "scripted"
    assert list(scripted.model_ids) == ["scripted/bad", "scripted/cut", "scripted/good"]
    assert (scripted.figures.requests, scripted.figures.errors) == (8, 4)
    err = error_from_rpc(unknown.value)
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND and "scripted/missing" in err.message


async def test_a_model_without_attempts_shows_zeros(make_stack: StackFactory) -> None:
    stack = await make_stack(roles=("registry", "gateway"), engines=[ScriptedEngine()])
    async with grpc.aio.insecure_channel(stack.address) as channel:
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        reply = await gateway.GetModelMetrics(
            gateway_pb2.GetModelMetricsRequest(model="scripted/echo"), timeout=10
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await gateway.GetModelMetrics(
                gateway_pb2.GetModelMetricsRequest(model="m" * 257), timeout=10
            )
    [echo] = reply.models
    assert echo.provider == "scripted" and echo.figures.requests == 0
    assert echo.figures.latency_ms_p50 == 0 and not echo.deployments
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details() == "model is 257 characters long; the limit is 256"


def _fast_writes() -> object:
    return parse_config("model_system: {monitoring: {metrics_interval: 100ms}}", env={})


async def _until(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def _entry(stack: Stack, model_id: str) -> common_pb2.ModelEntry:
    assert stack.catalog is not None
    return stack.catalog.get(model_id)


async def _set_profile(
    registry: registry_pb2_grpc.RegistryServiceAsyncStub,
    model_id: str,
    profile: common_pb2.PerformanceProfile,
) -> None:
    await registry.UpdatePerformance(
        registry_pb2.UpdatePerformanceRequest(id=model_id, performance=profile), timeout=10
    )


async def test_the_window_is_written_to_the_registry_keeping_the_cold_start(
    make_stack: StackFactory,
) -> None:
    engine = ScriptedEngine(("scripted/echo",), delay_s=0.01)
    stack = await make_stack(roles=("registry", "gateway"), engines=[engine], config=_fast_writes())
    assert stack.view is not None and stack.performance is not None
    tracker = stack.performance.tracker
    async with grpc.aio.insecure_channel(stack.address) as channel:
        registry = registry_pb2_grpc.RegistryServiceStub(channel)
        await _set_profile(
            registry, "scripted/echo", common_pb2.PerformanceProfile(cold_start_ms=1234)
        )
        view = stack.view
        await _until(lambda: view.get("scripted/echo").performance.cold_start_ms == 1234)
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        for _ in range(5):
            await gateway.Generate(_request("scripted/echo"), timeout=10)
        await _until(lambda: _entry(stack, "scripted/echo").performance.samples == 5)
        await _until(lambda: view.get("scripted/echo").performance.samples == 5)
        await asyncio.sleep(0.15)  # a round that found the copy behind may write once more
    stored = _entry(stack, "scripted/echo").performance
    figures = tracker.figures("scripted/echo")
    assert stored.cold_start_ms == 1234
    assert stored.latency_ms_p50 == figures.latency_ms_p50 >= 30  # 3 pieces, 10 ms apart
    assert stored.latency_ms_p95 == figures.latency_ms_p95
    assert stored.tokens_per_second == pytest.approx(figures.tokens_per_second)
    assert 20 < stored.tokens_per_second <= 100  # a token every 10 ms after the first
    assert stored.error_rate == 0.0
    written = stack.performance.written
    await asyncio.sleep(0.35)  # three more rounds, nothing new: nothing written
    assert stack.performance.written == written


async def test_live_figures_turn_the_selectors_choice_to_the_model_that_is_fast_now(
    make_stack: StackFactory,
) -> None:
    # The test. The registry says a-slow is the fast one (and the name wins
    # ties too), so the selector picks it; it is in fact slow: 40 ms between pieces,
    # b-fast 2 ms. Once the live figures are written back, the selector picks b-fast.
    slow = ScriptedEngine(("scripted/a-slow",), delay_s=0.04)
    fast = ScriptedEngine(("scripted/b-fast",), delay_s=0.002)
    stack = await make_stack(
        roles=("registry", "gateway"), engines=[slow, fast], config=_fast_writes()
    )
    assert stack.view is not None
    view = stack.view
    async with grpc.aio.insecure_channel(stack.address) as channel:
        registry = registry_pb2_grpc.RegistryServiceStub(channel)
        claimed = {"scripted/a-slow": (5.0, 1000.0), "scripted/b-fast": (500.0, 10.0)}
        for model_id, (p50, tps) in claimed.items():
            profile = common_pb2.PerformanceProfile(
                latency_ms_p50=p50, latency_ms_p95=p50, tokens_per_second=tps
            )
            await _set_profile(registry, model_id, profile)
        await _until(
            lambda: all(
                view.get(m).performance.latency_ms_p50 == p for m, (p, _) in claimed.items()
            )
        )
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        before = await gateway.Generate(_request(), timeout=10)
        assert before.model_id == "scripted/a-slow"
        for _ in range(3):
            for model_id in claimed:
                await gateway.Generate(_request(model_id), timeout=10)
        await _until(
            lambda: (
                view.get("scripted/a-slow").performance.samples >= 4
                and view.get("scripted/b-fast").performance.samples >= 3
            )
        )
        a_slow = view.get("scripted/a-slow").performance
        b_fast = view.get("scripted/b-fast").performance
        assert a_slow.latency_ms_p50 > 120 and a_slow.latency_ms_p50 > 3 * b_fast.latency_ms_p50
        assert a_slow.tokens_per_second < b_fast.tokens_per_second
        after = await gateway.Generate(_request(), timeout=10)
    assert after.model_id == "scripted/b-fast"


async def test_a_registry_that_refuses_the_write_is_logged_and_tried_again(
    make_stack: StackFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # The default interval (5 s): the stack's own rounds stay out of the way.
    stack = await make_stack(roles=("registry", "gateway"), engines=[ScriptedEngine()])
    assert stack.performance is not None
    async with grpc.aio.insecure_channel(stack.address) as channel:
        await gateway_pb2_grpc.GatewayServiceStub(channel).Generate(
            _request("scripted/echo"), timeout=10
        )
    reports = stack.performance
    sent: list[str] = []

    async def refusing(model_id: str, profile: common_pb2.PerformanceProfile) -> object:
        sent.append(model_id)
        raise BackendUnavailable("registry away")

    with caplog.at_level("WARNING"):
        assert await reports.write(refusing) == 0
        assert await reports.write(refusing) == 0  # tried again; logged once a minute
    assert sent == ["scripted/echo", "scripted/echo"]
    lines = [r.getMessage() for r in caplog.records if "performance" in r.getMessage()]
    assert lines == [
        "performance: 1 profile(s) did not reach the registry (tried again in 5s): "
        "scripted/echo: registry away"
    ]
