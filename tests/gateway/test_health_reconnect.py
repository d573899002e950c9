"""`monitoring.recovery: [reconnect]` through real stacks: a tripped remote backend is
reached through a new channel (the gateway and the backend as two servers on 127.0.0.1,
as in the split deployment); a backend in the gateway's own process has nothing to
reconnect."""

from __future__ import annotations

import asyncio
import time

import grpc
from conftest import StackFactory
from gateway.test_health_monitor import (
    HEALTHY,
    INTERVAL_S,
    RECOVERS_WITHIN_S,
    TRIPS_WITHIN_S,
    UNHEALTHY,
    BreakableEngine,
    _generate,
    _health_becomes,
    _recoveries,
)

from modelyard.config import ModelyardConfig, parse_config
from modelyard_client.errors import BackendUnavailable
from modelyard_client.v1 import gateway_pb2


def _config() -> ModelyardConfig:
    return parse_config(
        "model_system: {monitoring: "
        f"{{health_check_interval: {INTERVAL_S}s, recovery: [eject, reconnect]}}}}"
    )


async def test_a_tripped_remote_backend_gets_a_new_channel(make_stack: StackFactory) -> None:
    engine = BreakableEngine()
    backend = await make_stack([engine], roles=("registry",), config=_config())
    gateway = await make_stack(
        roles=("gateway",), registry_address=backend.address, config=_config()
    )
    assert gateway.health is not None and gateway.pool is not None
    assert isinstance(await _generate(gateway.address), gateway_pb2.GenerateResponse)
    endpoint = backend.address
    old = gateway.pool._channels[endpoint]

    engine.fail_with = BackendUnavailable("upstream down (scripted)")
    assert isinstance(await _generate(gateway.address), grpc.aio.AioRpcError)
    await _health_becomes(gateway, UNHEALTHY, TRIPS_WITHIN_S)
    deadline = time.monotonic() + TRIPS_WITHIN_S
    while _recoveries(gateway).get(("reconnect", "ok")) != 1:
        assert time.monotonic() < deadline, _recoveries(gateway)
        await asyncio.sleep(0.02)
    assert _recoveries(gateway) == {("eject", "ok"): 1, ("reconnect", "ok"): 1}
    assert old.get_state() == grpc.ChannelConnectivity.SHUTDOWN

    engine.fail_with = None  # the next probe passes, over the new channel
    await _health_becomes(gateway, HEALTHY, RECOVERS_WITHIN_S)
    assert isinstance(await _generate(gateway.address), gateway_pb2.GenerateResponse)
    assert gateway.pool._channels[endpoint] is not old


async def test_a_backend_in_the_gateways_process_has_nothing_to_reconnect(
    make_stack: StackFactory,
) -> None:
    engine = BreakableEngine()
    stack = await make_stack([engine], config=_config())
    engine.fail_with = BackendUnavailable("upstream down (scripted)")
    assert isinstance(await _generate(stack.address), grpc.aio.AioRpcError)
    await _health_becomes(stack, UNHEALTHY, TRIPS_WITHIN_S)
    deadline = time.monotonic() + TRIPS_WITHIN_S
    while len(_recoveries(stack)) < 2:
        assert time.monotonic() < deadline, _recoveries(stack)
        await asyncio.sleep(0.02)
    assert _recoveries(stack) == {("eject", "ok"): 1, ("reconnect", "skipped"): 1}
