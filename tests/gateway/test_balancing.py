"""Requests spread over a model's deployments; a failing one is ejected and probed back; an
unhealthy one is never picked."""

from __future__ import annotations

import time
from typing import Any

import grpc
import pytest
from conftest import StackFactory
from support.scripted_engine import ScriptedEngine

from modelyard.assembly import Stack
from modelyard.gateway.balancing import Balancer, CircuitPolicy
from modelyard_client.errors import (
    BackendUnavailable,
    DeadlineExceeded,
    InvalidRequest,
    StreamTruncated,
)
from modelyard_client.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
)

# The native pool's default (`DeploymentPool(consecutive_failures=5)`), which the gateway keeps.
FAILURES_TO_EJECT = 5


async def _two_deployments(
    make_stack: StackFactory, a: ScriptedEngine, b: ScriptedEngine
) -> tuple[Stack, list[Stack]]:
    """A registry + gateway, and two backend stacks that each serve "s/m"."""
    front = await make_stack(roles=("registry", "gateway"))
    backends = [
        await make_stack(roles=(), engines=[engine], registry_address=front.address)
        for engine in (a, b)
    ]
    async with grpc.aio.insecure_channel(front.address) as channel:
        registry = registry_pb2_grpc.RegistryServiceStub(channel)
        entry = await registry.GetModel(registry_pb2.GetModelRequest(id="s/m"))
    assert sorted(d.endpoint for d in entry.deployments) == sorted(s.address for s in backends)
    return front, backends


async def _outcomes(address: str, n: int, failure: grpc.StatusCode) -> list[str]:
    """The text of each of `n` calls in turn, "error" for each that failed with `failure`."""
    request = gateway_pb2.GenerateRequest(model="s/m")
    request.input.text = "hi"
    outcomes = []
    async with grpc.aio.insecure_channel(address) as channel:
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        for _ in range(n):
            try:
                outcomes.append((await gateway.Generate(request, timeout=10)).text)
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == failure, exc.details()
                outcomes.append("error")
    return outcomes


async def test_two_deployments_share_load_and_a_dead_one_is_ejected(
    make_stack: StackFactory,
) -> None:
    a, b = (ScriptedEngine(("s/m",), pieces=(name,)) for name in ("a", "b"))
    front, backends = await _two_deployments(make_stack, a, b)
    served = await _outcomes(front.address, 10, grpc.StatusCode.OK)
    assert sorted(served) == ["a"] * 5 + ["b"] * 5  # nothing in flight: they take turns

    await backends[0].server.server.stop(0)  # deployment "a" dies
    outcomes = await _outcomes(front.address, 30, grpc.StatusCode.UNAVAILABLE)
    # "a" keeps its turns until its fifth failure in a row ejects it; then only "b" serves.
    assert outcomes.count("error") == FAILURES_TO_EJECT
    assert outcomes[2 * FAILURES_TO_EJECT :] == ["b"] * (30 - 2 * FAILURES_TO_EJECT)


@pytest.mark.parametrize(
    ("how", "failure"),
    [
        ({"fail_with": StreamTruncated("upstream 'x' broke off")}, grpc.StatusCode.ABORTED),
        ({"finish": False}, grpc.StatusCode.ABORTED),
        (
            {"fail_with": DeadlineExceeded("upstream 'x' was late")},
            grpc.StatusCode.DEADLINE_EXCEEDED,
        ),
    ],
    ids=["truncated-upstream", "no-finish-reason", "deadline"],
)
async def test_truncated_and_late_answers_count_towards_ejection(
    make_stack: StackFactory, how: dict[str, Any], failure: grpc.StatusCode
) -> None:
    broken = ScriptedEngine(("s/m",), pieces=("a",), **how)
    good = ScriptedEngine(("s/m",), pieces=("b",))
    front, _ = await _two_deployments(make_stack, broken, good)
    outcomes = await _outcomes(front.address, 20, failure)
    assert outcomes.count("error") == FAILURES_TO_EJECT
    assert outcomes[2 * FAILURES_TO_EJECT :] == ["b"] * (20 - 2 * FAILURES_TO_EJECT)
    assert len(broken.calls) == FAILURES_TO_EJECT


def _model_with_deployments(*health: common_pb2.HealthStatus.ValueType) -> common_pb2.ModelEntry:
    model = common_pb2.ModelEntry(id="s/m")
    for i, h in enumerate(health):
        model.deployments.add(backend="scripted", endpoint=f"10.0.0.{i + 1}:50051", health=h)
    return model


def _picks(balancer: Balancer, model: common_pb2.ModelEntry, n: int) -> list[str]:
    picked = []
    for _ in range(n):
        lease = balancer.lease(model)
        picked.append(lease.deployment.endpoint)
        lease.finish(True)
    return picked


def test_the_catalogs_deployment_health_decides_which_deployments_are_picked() -> None:
    balancer = Balancer("round_robin")
    healthy, unavailable = common_pb2.HEALTH_STATUS_HEALTHY, common_pb2.HEALTH_STATUS_UNAVAILABLE
    model = _model_with_deployments(unavailable, healthy)
    assert _picks(balancer, model, 4) == ["10.0.0.2:50051"] * 4
    model.deployments[0].health = healthy  # the catalog says it is back
    assert sorted(_picks(balancer, model, 4)) == ["10.0.0.1:50051"] * 2 + ["10.0.0.2:50051"] * 2
    model.deployments[1].health = unavailable
    assert _picks(balancer, model, 4) == ["10.0.0.1:50051"] * 4
    model.deployments[0].health = unavailable
    with pytest.raises(BackendUnavailable):
        balancer.lease(model)


def test_by_default_a_lone_failing_deployment_is_out_so_its_calls_go_to_fallbacks() -> None:
    balancer = Balancer()
    model = _model_with_deployments(common_pb2.HEALTH_STATUS_HEALTHY)
    for _ in range(FAILURES_TO_EJECT - 1):
        balancer.lease(model).finish(False)
    assert balancer.lease(model).index == 0  # one short of the threshold: still in
    balancer.lease(model).finish(False)
    with pytest.raises(BackendUnavailable, match="among 1: 0 unhealthy, 1 ejected"):
        balancer.lease(model)


def test_a_lone_deployment_stays_in_with_max_ejected_share_below_1() -> None:
    balancer = Balancer(circuit=CircuitPolicy(max_ejected_share=0.5))
    model = _model_with_deployments(common_pb2.HEALTH_STATUS_HEALTHY)
    for _ in range(3 * FAILURES_TO_EJECT):
        balancer.lease(model).finish(False)
    assert balancer.lease(model).index == 0


def test_the_circuit_policy_reaches_the_pool_and_one_lease_is_the_probe() -> None:
    policy = CircuitPolicy(consecutive_failures=2, base_ejection_s=0.05, max_ejected_share=1.0)
    balancer = Balancer(circuit=policy)
    model = _model_with_deployments(common_pb2.HEALTH_STATUS_HEALTHY)
    balancer.lease(model).finish(False)
    balancer.lease(model).finish(False)
    with pytest.raises(BackendUnavailable, match="among 1: 0 unhealthy, 1 ejected"):
        balancer.lease(model)
    time.sleep(0.06)
    probe = balancer.lease(model)
    with pytest.raises(BackendUnavailable):  # the probe is out: no second caller
        balancer.lease(model)
    probe.finish(True)
    assert [balancer.lease(model).index for _ in range(3)] == [0, 0, 0]


def test_a_bad_circuit_policy_is_refused_naming_the_field() -> None:
    balancer = Balancer(circuit=CircuitPolicy(base_ejection_s=60.0))
    model = _model_with_deployments(common_pb2.HEALTH_STATUS_HEALTHY)
    with pytest.raises(InvalidRequest, match="max_ejection_s must be a finite number >= base"):
        balancer.lease(model)


def test_a_region_leases_only_the_deployments_there_whatever_the_strategy() -> None:
    model = _model_with_deployments(*[common_pb2.HEALTH_STATUS_HEALTHY] * 3)
    for deployment, region in zip(model.deployments, ("us", "eu", "eu"), strict=True):
        deployment.region = region
    for strategy in ("round_robin", "least_loaded", "p2c", "cost_optimized", "region_affinity"):
        balancer = Balancer(strategy, region="us")  # the gateway's own preference loses
        picked = {balancer.lease(model, "eu").deployment.endpoint for _ in range(12)}
        assert picked == {"10.0.0.2:50051", "10.0.0.3:50051"}, strategy
        assert balancer.lease(model).deployment.endpoint == "10.0.0.1:50051", strategy


def test_a_region_without_a_usable_deployment_is_unavailable_naming_the_region() -> None:
    model = _model_with_deployments(
        common_pb2.HEALTH_STATUS_HEALTHY, common_pb2.HEALTH_STATUS_UNAVAILABLE
    )
    model.deployments[0].region, model.deployments[1].region = "us", "eu"
    balancer = Balancer("round_robin")
    with pytest.raises(BackendUnavailable) as refused:
        balancer.lease(model, "eu")
    assert str(refused.value) == (
        "no usable deployment among 2: 2 unhealthy, 0 ejected; the request's "
        "constraints.region 'eu' leaves out the 1 deployed elsewhere"
    )
    with pytest.raises(BackendUnavailable) as refused:
        balancer.lease(model, "ap")
    assert str(refused.value) == (
        "model 's/m' has no deployment in region 'ap' (constraints.region)"
    )
    # The region's filter lasts one lease: the next, with none, finds the healthy one.
    assert balancer.lease(model).deployment.endpoint == "10.0.0.1:50051"
