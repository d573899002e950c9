"""Each service's grpc.health.v1 status follows what it can serve (`server/service_health.py`):
through a real stack (registry, gateway and an in-process backend on 127.0.0.1) asked
by grpc.health.v1's own Check and Watch, and `ServiceHealth` alone on a real
`DrainableHealth`."""

from __future__ import annotations

import asyncio
import logging
import time

import grpc
import pytest
from conftest import StackFactory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support.scripted_engine import ScriptedEngine

from modelyard.backends.engine import EngineHealth
from modelyard.config import parse_config
from modelyard.server.runtime import DrainableHealth
from modelyard.server.service_health import ServiceHealth, catalog_problem, engines_problem
from modelyard_client.errors import BackendUnavailable
from modelyard_client.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

MODEL = "scripted/echo"
INTERVAL_S = 0.2
WITHIN_S = 6.0  # a few intervals, with the health monitor's trip, on a loaded machine
BACKEND = "modelyard.v1.BackendService"
GATEWAY = "modelyard.v1.GatewayService"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
HEALTHY, UNHEALTHY = common_pb2.HEALTH_STATUS_HEALTHY, common_pb2.HEALTH_STATUS_UNHEALTHY


class SickEngine(ScriptedEngine):
    """The scripted engine with its own health settable."""

    def __init__(self) -> None:
        super().__init__((MODEL,))
        self.own_health = EngineHealth(HEALTHY)

    def health(self) -> EngineHealth:
        return self.own_health


async def _status(address: str, service: str) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
        return int(reply.status)


async def _becomes(address: str, service: str, status: int) -> float:
    """Seconds until `service` answers `status`."""
    started = time.monotonic()
    while (now := await _status(address, service)) != status:
        waited = time.monotonic() - started
        assert waited < WITHIN_S, f"{service} still {now} after {waited:.1f}s"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


def _config() -> object:
    return parse_config(
        f"model_system: {{monitoring: {{health_check_interval: {INTERVAL_S}s, recovery: [eject]}}}}"
    )


async def test_the_backend_service_is_not_serving_while_no_engine_can_serve(
    make_stack: StackFactory,
) -> None:
    engine = SickEngine()
    stack = await make_stack([engine], config=_config())
    assert await _status(stack.address, BACKEND) == SERVING
    engine.own_health = EngineHealth(UNHEALTHY, "the model process died")
    await _becomes(stack.address, BACKEND, NOT_SERVING)
    assert await _status(stack.address, "") == SERVING  # the process itself is up
    engine.own_health = EngineHealth(HEALTHY)
    await _becomes(stack.address, BACKEND, SERVING)


async def test_the_gateway_service_is_not_serving_while_no_model_is_servable_and_watchers_see_it(
    make_stack: StackFactory,
) -> None:
    engine = SickEngine()
    stack = await make_stack([engine], config=_config())
    async with grpc.aio.insecure_channel(stack.address) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=GATEWAY)
        )
        seen = [(await watch.read()).status]
        # The only model's backend fails: the health monitor trips it UNHEALTHY.
        engine.fail_with = BackendUnavailable("upstream down (scripted)")
        request = gateway_pb2.GenerateRequest(model=MODEL)
        request.input.text = "hi"
        with pytest.raises(grpc.aio.AioRpcError):
            await gateway_pb2_grpc.GatewayServiceStub(channel).Generate(request, timeout=10)
        await _becomes(stack.address, GATEWAY, NOT_SERVING)
        seen.append((await asyncio.wait_for(watch.read(), WITHIN_S)).status)
        # It answers again: one passing probe brings the model back, and the service.
        engine.fail_with = None
        await _becomes(stack.address, GATEWAY, SERVING)
        seen.append((await asyncio.wait_for(watch.read(), WITHIN_S)).status)
        watch.cancel()
    assert seen == [SERVING, NOT_SERVING, SERVING]


async def _check(health: DrainableHealth, service: str) -> int:
    reply = await health.Check(health_pb2.HealthCheckRequest(service=service), None)
    return int(reply.status)


async def test_each_change_is_set_once_and_logged_and_the_drain_has_the_last_word(
    caplog: pytest.LogCaptureFixture,
) -> None:
    health = DrainableHealth()
    await health.set(BACKEND, SERVING)
    statuses = [("llama", HEALTHY, "")]
    draining = False
    follower = ServiceHealth(
        health, {BACKEND: engines_problem(lambda: statuses)}, 0.01, lambda: draining
    )
    caplog.set_level(logging.INFO, "modelyard.server.service_health")
    await follower.check_once()
    assert await _check(health, BACKEND) == SERVING and not caplog.records
    statuses = [
        ("llama", UNHEALTHY, "crashed"),
        ("coreml", common_pb2.HEALTH_STATUS_UNAVAILABLE, ""),
    ]
    await follower.check_once()
    await follower.check_once()
    assert await _check(health, BACKEND) == NOT_SERVING
    assert [r.getMessage() for r in caplog.records] == [
        f"health: {BACKEND} NOT_SERVING: no engine can serve: "
        "llama HEALTH_STATUS_UNHEALTHY (crashed); coreml HEALTH_STATUS_UNAVAILABLE"
    ]
    statuses = [("llama", common_pb2.HEALTH_STATUS_DEGRADED, "slow")]  # degraded still serves
    await follower.check_once()
    assert await _check(health, BACKEND) == SERVING
    await health.set(BACKEND, NOT_SERVING)  # the drain
    draining = True
    statuses = [("llama", HEALTHY, "")]
    await follower.check_once()
    await asyncio.wait_for(follower.run(), 1)  # returns at once: draining
    assert await _check(health, BACKEND) == NOT_SERVING


def test_the_catalogs_problem_names_the_models_and_an_empty_catalog_is_none() -> None:
    def entry(model_id: str, health: int, *deployments: int) -> common_pb2.ModelEntry:
        found = common_pb2.ModelEntry(id=model_id, health=health)  # type: ignore[arg-type]
        for d in deployments:
            found.deployments.add(endpoint="127.0.0.1:1", health=d)
        return found

    models: list[common_pb2.ModelEntry] = []
    problem = catalog_problem(lambda: models)
    assert problem() is None  # a stack starting: nothing discovered yet
    models = [entry("a", UNHEALTHY, HEALTHY), entry("b", HEALTHY), entry("c", HEALTHY, UNHEALTHY)]
    assert problem() == (
        "no model in the catalog is servable: a HEALTH_STATUS_UNHEALTHY, "
        "b without a deployment, c with no servable deployment"
    )
    models.append(entry("d", common_pb2.HEALTH_STATUS_DEGRADED, HEALTHY, UNHEALTHY))
    assert problem() is None
    models = [entry(f"m{i}", UNHEALTHY, HEALTHY) for i in range(7)]
    assert str(problem()).endswith("m4 HEALTH_STATUS_UNHEALTHY and 2 more")
