"""The gateway's health monitor through a real stack (registry, gateway and an in-process
backend on 127.0.0.1): a backend made to fail trips its model's health within two check
intervals and the configured recovery runs; once it answers again, the model is HEALTHY.

The engine is the scripted one (no provider is called), failing with BackendUnavailable
as an unreachable upstream does, or reporting its own health as a backend does.
"""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from conftest import StackFactory
from support.scripted_engine import ScriptedEngine

from modelyard.assembly.stack import Stack
from modelyard.backends.engine import EngineHealth
from modelyard.config import parse_config
from modelyard.config.unbuilt import not_implemented
from modelyard.gateway.health_monitor import TRIP_AFTER, HealthMonitor
from modelyard_client.errors import BackendUnavailable, InvalidRequest
from modelyard_client.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

MODEL = "scripted/echo"
INTERVAL_S = 0.2
# Two intervals, and slack for a loaded machine (a round's own calls, the watch's delivery).
TRIPS_WITHIN_S = TRIP_AFTER * INTERVAL_S + 1.0
RECOVERS_WITHIN_S = 5.0  # one passing probe; not what is measured here, so generous
HEALTHY, UNHEALTHY = common_pb2.HEALTH_STATUS_HEALTHY, common_pb2.HEALTH_STATUS_UNHEALTHY


class BreakableEngine(ScriptedEngine):
    """The scripted engine, with its loads and unloads recorded and its health settable."""

    def __init__(self) -> None:
        super().__init__((MODEL,))
        self.loads: list[str] = []
        self.unloads: list[str] = []
        self.own_health = EngineHealth(HEALTHY)

    async def load(self, model_id: str) -> float:
        self.loads.append(model_id)
        return 0.0

    async def unload(self, model_id: str) -> bool:
        self.unloads.append(model_id)
        return True

    def health(self) -> EngineHealth:
        return self.own_health

    def gateway_calls(self) -> int:
        """Calls that were not the monitor's one-token probes."""
        return sum(1 for _, _, params in self.calls if params.max_tokens != 1)


async def _stack(make_stack: StackFactory, engine: BreakableEngine, recovery: str) -> Stack:
    config = parse_config(
        "model_system: {monitoring: "
        f"{{health_check_interval: {INTERVAL_S}s, recovery: [{recovery}]}}}}"
    )
    return await make_stack([engine], config=config)


async def _generate(address: str) -> grpc.aio.AioRpcError | gateway_pb2.GenerateResponse:
    request = gateway_pb2.GenerateRequest(model=MODEL)
    request.input.text = "hi"
    request.params.max_tokens = 8
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            return await gateway_pb2_grpc.GatewayServiceStub(channel).Generate(request, timeout=10)
        except grpc.aio.AioRpcError as exc:
            return exc


async def _health_becomes(
    stack: Stack, health: common_pb2.HealthStatus.ValueType, within_s: float
) -> common_pb2.ModelEntry:
    """The gateway's watched catalog copy (fed by WatchModels) once the entry has `health`."""
    assert stack.view is not None
    deadline = time.monotonic() + within_s
    while (entry := stack.view.get(MODEL)).health != health:
        assert time.monotonic() < deadline, (
            f"{MODEL} is {common_pb2.HealthStatus.Name(entry.health)} after {within_s}s: "
            f"{entry.health_reason!r}"
        )
        await asyncio.sleep(0.02)
    return entry


def _recoveries(stack: Stack) -> dict[tuple[str, str], float]:
    return {
        (
            dict(attrs)["modelyard.recovery.action"],
            dict(attrs)["modelyard.recovery.outcome"],
        ): s.value
        for attrs, s in stack.meters.recoveries.series.items()
    }


async def test_a_failing_backend_trips_within_two_intervals_is_recovered_and_comes_back(
    make_stack: StackFactory,
) -> None:
    engine = BreakableEngine()
    stack = await _stack(make_stack, engine, "eject, reload")
    assert stack.health is not None and stack.catalog is not None
    assert isinstance(await _generate(stack.address), gateway_pb2.GenerateResponse)

    engine.fail_with = BackendUnavailable("upstream down (scripted)")
    failed = await _generate(stack.address)  # the live window's error: the passive signal
    assert isinstance(failed, grpc.aio.AioRpcError)
    entry = await _health_becomes(stack, UNHEALTHY, TRIPS_WITHIN_S)
    assert "upstream down (scripted)" in entry.health_reason
    assert stack.catalog.get(MODEL).health == UNHEALTHY  # the registry's own entry
    # reload: Unload then Load through the backend; eject: the balancer holds it out.
    assert engine.unloads == [MODEL] and engine.loads == [MODEL]
    assert stack.health.tripped(MODEL, entry.deployments[0].endpoint)
    assert entry.deployments[0].health == HEALTHY  # the catalog still says it may be called
    with pytest.raises(BackendUnavailable):
        stack.health.balancer.lease(entry)
    assert _recoveries(stack) == {("eject", "ok"): 1, ("reload", "ok"): 1}
    calls = engine.gateway_calls()
    assert isinstance(await _generate(stack.address), grpc.aio.AioRpcError)
    assert engine.gateway_calls() == calls  # no call went to it

    engine.fail_with = None  # the next probe passes
    entry = await _health_becomes(stack, HEALTHY, RECOVERS_WITHIN_S)
    assert not stack.health.tripped(MODEL, entry.deployments[0].endpoint)
    assert isinstance(await _generate(stack.address), gateway_pb2.GenerateResponse)
    assert engine.loads == [MODEL]  # recovery ran once, at the trip


async def test_a_backend_reporting_itself_unavailable_has_its_models_probed(
    make_stack: StackFactory,
) -> None:
    engine = BreakableEngine()
    stack = await _stack(make_stack, engine, "")
    assert stack.health is not None
    # No call to the gateway: the backend's own health is the signal, the probe the proof.
    engine.own_health = EngineHealth(common_pb2.HEALTH_STATUS_UNAVAILABLE, "weights file gone")
    engine.fail_with = BackendUnavailable("model not loaded (scripted)")
    entry = await _health_becomes(stack, UNHEALTHY, TRIPS_WITHIN_S)
    assert "probe: " in entry.health_reason
    assert "model not loaded (scripted)" in entry.health_reason
    assert "reports HEALTH_STATUS_UNAVAILABLE" in entry.health_reason
    assert "scripted: weights file gone" in entry.health_reason
    assert engine.gateway_calls() == 0 and engine.calls  # only one-token probes
    assert engine.loads == [] and _recoveries(stack) == {}  # recovery: [] runs nothing
    stack.health.balancer.lease(entry).finish(True)  # not ejected

    engine.fail_with = None  # still reported unavailable, but its model answers
    await _health_becomes(stack, HEALTHY, RECOVERS_WITHIN_S)


async def test_a_backend_that_reports_trouble_but_answers_is_not_tripped(
    make_stack: StackFactory,
) -> None:
    engine = BreakableEngine()
    stack = await _stack(make_stack, engine, "eject")
    assert stack.health is not None and stack.view is not None
    announced = stack.view.get(MODEL)
    engine.own_health = EngineHealth(common_pb2.HEALTH_STATUS_UNHEALTHY, "another model's")
    await _rounds(stack.health, 3)
    assert len(engine.calls) >= 3  # probed each round
    assert stack.view.get(MODEL) == announced  # nothing written: its health stands


async def _rounds(monitor: HealthMonitor, count: int) -> None:
    rounds = monitor.rounds
    deadline = time.monotonic() + 10
    while monitor.rounds < rounds + count:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)


async def test_a_healthy_backend_is_left_alone(make_stack: StackFactory) -> None:
    engine = BreakableEngine()
    stack = await _stack(make_stack, engine, "eject")
    assert stack.health is not None and stack.view is not None
    announced = stack.view.get(MODEL)
    await _rounds(stack.health, 3)
    assert engine.calls == []  # no probe generated: no failing call to look into
    assert stack.view.get(MODEL) == announced  # nothing written: its health stands


async def test_one_failed_check_does_not_trip(make_stack: StackFactory) -> None:
    engine = BreakableEngine()
    stack = await _stack(make_stack, engine, "eject")
    monitor = stack.health
    assert monitor is not None
    written: list[tuple[str, int, str]] = []

    async def send(model_id: str, health: common_pb2.HealthStatus.ValueType, reason: str) -> None:
        written.append((model_id, health, reason))

    assert stack.view is not None
    endpoint = stack.view.get(MODEL).deployments[0].endpoint
    # A monitor of its own, driven round by round (the stack's runs beside it).
    own = HealthMonitor(
        monitor.catalog, monitor.pool, monitor.tracker, monitor.balancer, 1.0, ["eject"]
    )
    engine.fail_with = BackendUnavailable("flaky (scripted)")
    own.tracker.record(MODEL, "scripted", endpoint, own.tracker.clock(), 0.0, 0, False, 0.0)
    await own.check(send)  # the live window's failure: probed, failed once
    engine.fail_with = None
    await own.check(send)  # passed: the count starts again
    engine.fail_with = BackendUnavailable("flaky (scripted)")
    await own.check(send)
    assert written == []  # never two in a row
    await own.check(send)
    assert [(m, h) for m, h, _ in written] == [(MODEL, UNHEALTHY)]
    assert "flaky (scripted)" in written[0][2]


def test_recovery_names_known_actions_once() -> None:
    config = parse_config("model_system: {monitoring: {recovery: [reload, eject]}}")
    assert config.monitoring.recovery == ("reload", "eject")
    assert parse_config("model_system: {}").monitoring.recovery == ("eject",)
    with pytest.raises(InvalidRequest, match="recovery"):
        parse_config("model_system: {monitoring: {recovery: [restart]}}")
    with pytest.raises(InvalidRequest, match=r"recovery\[1\].*named twice"):
        parse_config("model_system: {monitoring: {recovery: [eject, eject]}}")


def test_the_check_interval_acts() -> None:
    config = parse_config("model_system: {monitoring: {health_check_interval: 10s}}")
    assert "monitoring.health_check_interval" not in not_implemented(config)
