"""A deployment's circuit opened by its live failure rate (`balancing.FailureRate`), read from
the performance tracker's counts, beside the native pool's failures-in-a-row rule.

Unit tests drive a `Balancer` and the `PerformanceTracker` it reads as the gateway does
(record the attempt, then finish its lease); the last test runs the rule through a real
stack, a flapping deployment beside a good one.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import grpc
import pytest
from conftest import StackFactory
from support.clock import Clock
from support.scripted_engine import ScriptedEngine

from modelyard.backends.engine import Piece
from modelyard.config import ConfigError, parse_config
from modelyard.gateway.balancing import Balancer, CircuitPolicy
from modelyard.gateway.performance import FaultWindow, PerformanceTracker
from modelyard.meters.instruments import Meters
from modelyard.meters.resilience import ResilienceMeter
from modelyard_client.errors import BackendUnavailable
from modelyard_client.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
)


def _model(deployments: int = 1) -> common_pb2.ModelEntry:
    model = common_pb2.ModelEntry(id="s/m")
    for i in range(deployments):
        model.deployments.add(
            backend="scripted",
            endpoint=f"10.0.0.{i + 1}:50051",
            health=common_pb2.HEALTH_STATUS_HEALTHY,
        )
    return model


def _attempt(
    balancer: Balancer, tracker: PerformanceTracker, model: common_pb2.ModelEntry, fault: bool
) -> None:
    """One attempt as `GatewayCore._stream_one` makes it: recorded, then its lease finished."""
    lease = balancer.lease(model)
    now = tracker.clock()
    tracker.record(
        model.id, "scripted", lease.deployment.endpoint, now, 0.0, 0, not fault, 0.0, fault
    )
    lease.finish(not fault)


def _ejections(meters: Meters) -> dict[str, float]:
    return {
        dict(attrs)["modelyard.ejection.cause"]: s.value
        for attrs, s in meters.ejections.series.items()
    }


def _flapping(policy: CircuitPolicy) -> tuple[Balancer, PerformanceTracker, Meters]:
    meters = Meters()
    tracker = PerformanceTracker(clock=Clock(1000.0))
    return (
        Balancer(circuit=policy, events=ResilienceMeter(meters), tracker=tracker),
        tracker,
        meters,
    )


def test_a_deployment_failing_every_other_call_opens_once_the_share_and_count_are_reached() -> None:
    # Never two failures in a row, so the failures-in-a-row rule (5) never fires.
    balancer, tracker, meters = _flapping(CircuitPolicy(failure_rate=0.5, min_requests=6))
    model = _model()
    for i in range(6):  # fault, ok, fault, ok, fault, ok: 3 of 6, but the 6th succeeded
        _attempt(balancer, tracker, model, fault=i % 2 == 0)
    assert balancer.lease(model).index == 0  # in: the rule is read on a failure only
    balancer, tracker, meters = _flapping(CircuitPolicy(failure_rate=0.5, min_requests=6))
    for i in range(5):  # ok, fault, ok, fault, ok
        _attempt(balancer, tracker, model, fault=i % 2 == 1)
    assert tracker.circuit_counts(model.id, "10.0.0.1:50051") == (5, 2)
    _attempt(balancer, tracker, model, fault=True)  # 3 faults of 6: half, at the minimum count
    with pytest.raises(BackendUnavailable, match="among 1: 0 unhealthy, 1 ejected"):
        balancer.lease(model)
    assert _ejections(meters) == {"failure_rate": 1}
    # Counted afresh from the opening: the deployment's past does not trip it again.
    assert tracker.circuit_counts(model.id, "10.0.0.1:50051") == (0, 0)


def test_below_the_share_or_the_count_the_deployment_stays_in() -> None:
    balancer, tracker, meters = _flapping(CircuitPolicy(failure_rate=0.5, min_requests=6))
    model = _model()
    for fault in (False, False, True, False, True, False, True, False, True):  # 4 of 9
        _attempt(balancer, tracker, model, fault)
    assert balancer.lease(model).index == 0
    balancer, tracker, meters = _flapping(CircuitPolicy(failure_rate=0.5, min_requests=6))
    for fault in (True, False, True, False, True):  # 3 of 5: the share, not the count
        _attempt(balancer, tracker, model, fault)
    assert balancer.lease(model).index == 0
    assert _ejections(meters) == {}


def test_failure_rate_0_turns_the_rule_off() -> None:
    balancer, tracker, meters = _flapping(CircuitPolicy(failure_rate=0.0, min_requests=2))
    model = _model()
    for i in range(40):
        _attempt(balancer, tracker, model, fault=i % 2 == 0)
    assert balancer.lease(model).index == 0
    assert balancer.rate is None
    assert _ejections(meters) == {}


def test_failures_in_a_row_still_open_first_and_are_counted_as_circuit() -> None:
    balancer, tracker, meters = _flapping(CircuitPolicy(consecutive_failures=3, min_requests=20))
    model = _model()
    for _ in range(3):
        _attempt(balancer, tracker, model, fault=True)
    with pytest.raises(BackendUnavailable):
        balancer.lease(model)
    assert _ejections(meters) == {"circuit": 1}
    assert tracker.circuit_counts(model.id, "10.0.0.1:50051") == (0, 0)


def test_the_rule_keeps_within_the_cap_on_deployments_out() -> None:
    policy = CircuitPolicy(failure_rate=0.5, min_requests=2, max_ejected_share=0.5)
    balancer, tracker, meters = _flapping(policy)
    model = _model(2)
    for _ in range(12):  # the first lease of each round fails, the second succeeds
        lease = balancer.lease(model)
        endpoint = lease.deployment.endpoint
        tracker.record(model.id, "scripted", endpoint, tracker.clock(), 0.0, 0, False, 0.0, True)
        lease.finish(False)
        ok = balancer.lease(model)  # a success between, so no run of failures
        now = tracker.clock()
        tracker.record(model.id, "scripted", ok.deployment.endpoint, now, 0.0, 0, True, 0.0)
        ok.finish(True)
    assert _ejections(meters) == {"failure_rate": 1}  # half of two: one out at most
    assert balancer.lease(model).deployment.endpoint  # the other still serves


def test_the_fault_window_forgets_attempts_older_than_it() -> None:
    window = FaultWindow(10.0)
    for t in range(20):  # one attempt a second, every third a fault
        window.add(100.0 + t, fault=t % 3 == 0)
    attempts, faults = window.counts(119.5)
    assert attempts == 10  # seconds 110..119
    assert faults == sum(1 for t in range(10, 20) if t % 3 == 0)
    assert window.counts(140.0) == (0, 0)
    window.add(140.0, fault=True)
    assert window.counts(140.0) == (1, 1)
    window.clear()
    assert window.counts(140.0) == (0, 0)


def test_the_config_keys_reach_the_policy_and_bad_values_are_named() -> None:
    config = parse_config(
        "model_system: {gateway: {circuit: {failure_rate: 0.25, min_requests: 50, window: 30s}}}"
    )
    policy = CircuitPolicy.from_config(config.gateway.circuit)
    assert (policy.failure_rate, policy.min_requests, policy.window_s) == (0.25, 50, 30.0)
    tracker = PerformanceTracker()
    Balancer(circuit=policy, tracker=tracker)
    assert tracker.circuit_window_s == 30.0
    for bad, named in (
        ("failure_rate: 1.5", "gateway.circuit.failure_rate"),
        ("min_requests: 0", "gateway.circuit.min_requests"),
        ("window: 0s", "gateway.circuit.window"),
    ):
        with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
            parse_config(f"model_system: {{gateway: {{circuit: {{{bad}}}}}}}")


class FlappingEngine(ScriptedEngine):
    """Fails every other call it gets with BackendUnavailable, before any piece."""

    def __init__(self) -> None:
        super().__init__(("s/m",), pieces=("a",))
        self.count = 0

    async def infer_stream(
        self, model_id: str, model_input: common_pb2.Input, params: common_pb2.GenerationParams
    ) -> AsyncGenerator[Piece, None]:
        self.count += 1
        if self.count % 2 == 0:
            raise BackendUnavailable("the flapping deployment drops this one")
        async for piece in super().infer_stream(model_id, model_input, params):
            yield piece


async def test_through_a_stack_a_flapping_deployment_is_taken_out_and_its_turns_go_to_the_other(
    make_stack: StackFactory,
) -> None:
    config = parse_config("model_system: {gateway: {circuit: {min_requests: 10}}}")
    front = await make_stack(roles=("registry", "gateway"), config=config)
    flapping, good = FlappingEngine(), ScriptedEngine(("s/m",), pieces=("b",))
    for engine in (flapping, good):
        await make_stack(roles=(), engines=[engine], registry_address=front.address)
    request = gateway_pb2.GenerateRequest(model="s/m")
    request.input.text = "hi"
    texts = []
    async with grpc.aio.insecure_channel(front.address) as channel:
        registry = registry_pb2_grpc.RegistryServiceStub(channel)
        entry = await registry.GetModel(registry_pb2.GetModelRequest(id="s/m"))
        assert len(entry.deployments) == 2
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        for _ in range(40):
            try:
                texts.append((await gateway.Generate(request, timeout=10)).text)
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc.details()
                texts.append("error")
    # The deployments take turns; the flapping one fails every other call it gets, never
    # two in a row: its 10th attempt (the 5th fault of 10, min_requests 10) opens it, at
    # the 19th or 20th call; from then on, for its 5 s out, only the good one serves.
    assert texts.count("error") == 5, texts
    last_error = max(i for i, t in enumerate(texts) if t == "error")
    assert last_error <= 19, texts
    assert texts[last_error + 1 :] == ["b"] * (39 - last_error)
    assert flapping.count == 10
    assert front.meters is not None
    assert _ejections(front.meters) == {"failure_rate": 1}
