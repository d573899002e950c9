"""The health monitor's ``standby`` recovery through a real stack (registry, hot-swap, gateway
and in-process backends on 127.0.0.1): a model whose backend fails trips, and the alias it
serves is swapped to the route's first healthy fallback by the hot-swap service's own Swap
within two check intervals; calls to the alias then succeed on the standby.

The engines are scripted (no provider is called); the primary fails with BackendUnavailable
as an unreachable upstream does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

import grpc
import pytest
from conftest import StackFactory
from support.scripted_engine import ScriptedEngine

from modelyard.assembly.stack import Stack
from modelyard.config import default_config
from modelyard.config.schema import HotSwapConfig, ModelyardConfig, MonitoringConfig
from modelyard.gateway.health_monitor import RECOVERY_ACTIONS, TRIP_AFTER, HealthMonitor
from modelyard_client.errors import BackendUnavailable, InvalidRequest
from modelyard_client.v1 import gateway_pb2, gateway_pb2_grpc, hotswap_pb2, hotswap_pb2_grpc

PRIMARY, BROKEN, SPARE = "scripted/echo", "scripted/broken", "scripted/spare"
ALIAS = "chat"
INTERVAL_S = 0.2
# Two intervals, and slack for a loaded machine (the round's calls, the swap's validation
# prompt on the standby, the route's delivery through WatchRoutes).
MOVES_WITHIN_S = TRIP_AFTER * INTERVAL_S + 3.0


def _config(recovery: tuple[str, ...]) -> ModelyardConfig:
    # Built directly: the file's check wants each route's backend configured, and the
    # scripted engines are a test's, not the file's.
    config = default_config({})
    return dataclasses.replace(
        config,
        hot_swap=HotSwapConfig(routes={ALIAS: PRIMARY}),
        monitoring=dataclasses.replace(
            config.monitoring,
            health_check_interval=INTERVAL_S,
            recovery=recovery,  # type: ignore[arg-type]
        ),
    )


async def _generate(
    address: str, model: str
) -> grpc.aio.AioRpcError | gateway_pb2.GenerateResponse:
    request = gateway_pb2.GenerateRequest(model=model)
    request.input.text = "hi"
    request.params.max_tokens = 8
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            return await gateway_pb2_grpc.GatewayServiceStub(channel).Generate(request, timeout=10)
        except grpc.aio.AioRpcError as exc:
            return exc


async def _set_fallbacks(address: str, models: list[str]) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        await hotswap_pb2_grpc.HotSwapServiceStub(channel).SetFallbacks(
            hotswap_pb2.SetFallbacksRequest(alias=ALIAS, fallback_models=models), timeout=10
        )


async def _route_reaches(stack: Stack, check: str, within_s: float) -> hotswap_pb2.Route:
    """The gateway's route copy for ALIAS once `check` ("fallbacks" or a model id) holds."""
    assert stack.route_view is not None
    deadline = time.monotonic() + within_s
    while True:
        route = stack.route_view.for_alias(ALIAS)
        assert route is not None
        if (check == "fallbacks" and route.fallback_models) or route.model_id == check:
            return route
        assert time.monotonic() < deadline, f"{ALIAS} is on {route.model_id} after {within_s}s"
        await asyncio.sleep(0.02)


def _recoveries(stack: Stack) -> dict[tuple[str, str], float]:
    return {
        (
            dict(attrs)["modelyard.recovery.action"],
            dict(attrs)["modelyard.recovery.outcome"],
        ): s.value
        for attrs, s in stack.meters.recoveries.series.items()
    }


def test_standby_is_a_known_recovery_action() -> None:
    assert "standby" in RECOVERY_ACTIONS
    assert "standby" in MonitoringConfig.__annotations__["recovery"]


async def test_a_tripped_model_s_alias_moves_to_its_first_healthy_fallback_by_a_swap(
    make_stack: StackFactory,
) -> None:
    primary = ScriptedEngine((PRIMARY,))
    broken = ScriptedEngine((BROKEN,), fail_with=BackendUnavailable("down too (scripted)"))
    spare = ScriptedEngine((SPARE,))
    stack = await make_stack([primary, broken, spare], config=_config(("eject", "standby")))
    assert stack.health is not None
    # The first fallback fails its own checks too: the standby is the first healthy one.
    assert isinstance(await _generate(stack.address, BROKEN), grpc.aio.AioRpcError)
    await _set_fallbacks(stack.address, [BROKEN, SPARE])
    await _route_reaches(stack, "fallbacks", 10)
    answer = await _generate(stack.address, ALIAS)
    assert isinstance(answer, gateway_pb2.GenerateResponse) and answer.model_id == PRIMARY

    primary.fail_with = BackendUnavailable("upstream down (scripted)")
    answer = await _generate(stack.address, ALIAS)  # its fallbacks answer for this one call
    assert isinstance(answer, gateway_pb2.GenerateResponse) and answer.model_id == SPARE
    started = time.monotonic()
    route = await _route_reaches(stack, SPARE, MOVES_WITHIN_S)
    assert time.monotonic() - started < MOVES_WITHIN_S
    assert list(route.fallback_models) == [BROKEN, SPARE]  # the list travels with the swap

    tried = len(primary.calls)
    answer = await _generate(stack.address, ALIAS)
    assert isinstance(answer, gateway_pb2.GenerateResponse), answer
    assert answer.model_id == SPARE and answer.text == "hello world"
    assert len(primary.calls) == tried  # the route's model now: no attempt on the tripped one
    assert _recoveries(stack)[("standby", "ok")] == 1
    ejections = {a: s.value for a, s in stack.meters.ejections.series.items()}
    cause = "modelyard.ejection.cause"
    assert ejections == {  # the broken fallback trips too
        (("gen_ai.request.model", model_id), (cause, "health")): 1 for model_id in (PRIMARY, BROKEN)
    }
    # A swap like any other: recorded with its phases, and it can be rolled back.
    phases = {dict(a)["modelyard.swap.phase"] for a in stack.meters.swap_phases.series}
    assert "switched" in phases
    async with grpc.aio.insecure_channel(stack.address) as channel:
        hotswap = hotswap_pb2_grpc.HotSwapServiceStub(channel)
        routes = await hotswap.ListRoutes(hotswap_pb2.ListRoutesRequest(), timeout=10)
        (stored,) = [r for r in routes.routes if r.alias == ALIAS]
        assert stored.model_id == SPARE


async def test_a_tripped_model_without_a_healthy_fallback_keeps_its_route(
    make_stack: StackFactory,
) -> None:
    primary = ScriptedEngine((PRIMARY,))
    broken = ScriptedEngine((BROKEN,), fail_with=BackendUnavailable("down too (scripted)"))
    stack = await make_stack([primary, broken], config=_config(("standby",)))
    assert isinstance(await _generate(stack.address, BROKEN), grpc.aio.AioRpcError)
    await _set_fallbacks(stack.address, [BROKEN])
    await _route_reaches(stack, "fallbacks", 10)
    primary.fail_with = BackendUnavailable("upstream down (scripted)")
    assert isinstance(await _generate(stack.address, ALIAS), grpc.aio.AioRpcError)  # both fail
    deadline = time.monotonic() + MOVES_WITHIN_S
    while ("standby", "failed") not in _recoveries(stack):
        assert time.monotonic() < deadline, _recoveries(stack)
        await asyncio.sleep(0.02)
    assert stack.route_view is not None
    route = stack.route_view.for_alias(ALIAS)
    assert route is not None and route.model_id == PRIMARY


async def test_standby_without_hot_swap_is_refused_at_configuration_time(
    make_stack: StackFactory,
) -> None:
    with pytest.raises(InvalidRequest, match="'standby' moves routes through hot-swap"):
        await make_stack(
            [ScriptedEngine((PRIMARY,))],
            roles=("registry", "selector", "gateway"),
            config=_config(("eject", "standby")),
        )


def test_the_monitor_itself_refuses_standby_with_nothing_to_move_through() -> None:
    with pytest.raises(ValueError, match="'standby' moves routes through hot-swap"):
        HealthMonitor(
            None,  # type: ignore[arg-type]
            None,  # type: ignore[arg-type]
            None,  # type: ignore[arg-type]
            None,  # type: ignore[arg-type]
            INTERVAL_S,
            ("standby",),
        )
