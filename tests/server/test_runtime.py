"""Every server answers health and reflection, and drains in-flight calls on stop."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from conftest import StackFactory, free_port
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from support.scripted_engine import ScriptedEngine

from modelyard.server.runtime import GenericOnly, bind
from modelyard_client.v1 import gateway_pb2, gateway_pb2_grpc, registry_pb2, registry_pb2_grpc

ALL_SERVICES = {
    "modelyard.v1.RegistryService",
    "modelyard.v1.SelectorService",
    "modelyard.v1.HotSwapService",
    "modelyard.v1.GatewayService",
    "modelyard.v1.BackendService",
    "modelyard.v1.AuditService",  # every server keeps its audit log
    "modelyard.v1.KeyService",  # with the gateway role
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
}


async def _reflected_services(address: str) -> set[str]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        call = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        async for response in call:
            return {s.name for s in response.list_services_response.service}
    return set()


async def test_reflection_lists_every_service_and_health_is_serving(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack(
        engines=[ScriptedEngine()], roles=("registry", "selector", "hotswap", "gateway")
    )
    assert await _reflected_services(stack.address) == ALL_SERVICES
    async with grpc.aio.insecure_channel(stack.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ["", *sorted(s for s in ALL_SERVICES if s.startswith("modelyard"))]:
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, service


class _RecordingServer:
    """What a generated registrar hands a server, recorded."""

    def __init__(self) -> None:
        self.added: list[tuple[str, str]] = []

    def add_generic_rpc_handlers(self, handlers: tuple[grpc.GenericRpcHandler[Any, Any]]) -> None:
        self.added += [("generic", h.service_name()) for h in handlers]  # type: ignore[attr-defined]

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        self.added.append(("registered", service))


def test_services_reach_the_server_as_generic_handlers_only() -> None:
    """grpc.aio waits on one task per registered method for every call it takes
    (`GenericOnly`): what the generated registrars register never reaches the server,
    their generic handlers do (the reflection test above: every service still served)."""
    server = _RecordingServer()
    handlers = cast(grpc.aio.Server, GenericOnly(cast(grpc.aio.Server, server)))
    health_pb2_grpc.add_HealthServicer_to_server(health_pb2_grpc.HealthServicer(), handlers)
    gateway = cast(Any, gateway_pb2_grpc.GatewayServiceServicer)()  # abstract in the stubs
    bind(gateway).register(handlers)
    assert server.added == [
        ("generic", "grpc.health.v1.Health"),
        ("generic", "modelyard.v1.GatewayService"),
    ]


DRAINING = "this server is draining; call another instance"


def _refuses_connections(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return True
    return False


async def _refused_within(port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not _refuses_connections(port):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def _generate_request() -> gateway_pb2.GenerateRequest:
    req = gateway_pb2.GenerateRequest(model="scripted/echo")
    req.input.text = "hi"
    return req


async def test_in_the_notice_window_new_calls_are_unavailable_then_connections_are_refused(
    make_stack: StackFactory,
) -> None:
    engine = ScriptedEngine(pieces=tuple("abcdefgh"), delay_s=0.15)  # streams for 1.2 s
    stack = await make_stack(roles=("registry", "gateway"), engines=[engine])
    req = _generate_request()
    async with (
        grpc.aio.insecure_channel(stack.address) as channel,
        grpc.aio.insecure_channel(stack.address) as fresh,
    ):
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        gateway = health_pb2.HealthCheckRequest(service="modelyard.v1.GatewayService")
        watch = health.Watch(gateway, timeout=10)  # left open: it must not hold the stop
        assert await _status(watch) == health_pb2.HealthCheckResponse.SERVING
        in_flight = asyncio.ensure_future(stub.Generate(req, timeout=10))
        await asyncio.wait_for(engine.called.wait(), 5)
        began = time.monotonic()
        drain = asyncio.create_task(stack.stop(grace_s=5, notice_s=0.6))  # what SIGTERM runs
        assert await _status(watch) == health_pb2.HealthCheckResponse.NOT_SERVING
        # In the window: a new call, on the open connection and on a new one, is
        # refused by the server (UNAVAILABLE, draining), and health says NOT_SERVING.
        refused = []
        for stub_of in (stub, gateway_pb2_grpc.GatewayServiceStub(fresh)):
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await stub_of.Generate(req, timeout=2)
            refused.append((failed.value.code(), failed.value.details()))
        checked = await health_pb2_grpc.HealthStub(fresh).Check(gateway, timeout=2)
        in_window = time.monotonic() - began
        assert refused == [(grpc.StatusCode.UNAVAILABLE, DRAINING)] * 2
        assert checked.status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert in_window < 0.6, "the checks above took longer than the notice window"
        # After the window, while the first call still streams: connections are refused.
        assert await _refused_within(stack.server.port, 2)
        refused_after = time.monotonic() - began
        assert not in_flight.done()
        assert refused_after >= 0.6
        reply = await in_flight
        assert reply.text == "abcdefgh"  # the call that was running finished
        assert len(engine.calls) == 1  # the refused ones never reached the engine
        await asyncio.wait_for(drain, 1)  # soon after the last call, not at the grace deadline
        watch.cancel()


async def test_with_nothing_in_flight_the_server_still_waits_out_the_notice(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack(roles=("registry", "gateway"), engines=[ScriptedEngine()])
    began = time.monotonic()
    drain = asyncio.create_task(stack.stop(grace_s=5, notice_s=0.5))
    async with grpc.aio.insecure_channel(stack.address) as channel:  # a new connection
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await gateway_pb2_grpc.GatewayServiceStub(channel).Generate(
                _generate_request(), timeout=2
            )
        assert (failed.value.code(), failed.value.details()) == (
            grpc.StatusCode.UNAVAILABLE,
            DRAINING,
        )
        assert not drain.done()
    await asyncio.wait_for(drain, 2)
    assert 0.5 <= time.monotonic() - began < 1.5
    assert _refuses_connections(stack.server.port)


async def test_the_notice_never_outlasts_the_grace_period(make_stack: StackFactory) -> None:
    stack = await make_stack(roles=("registry",))
    began = time.monotonic()
    await asyncio.wait_for(stack.stop(grace_s=0.2, notice_s=30), 2)
    assert time.monotonic() - began < 1.0
    assert _refuses_connections(stack.server.port)


async def _status(
    watch: grpc.aio.UnaryStreamCall[health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse],
) -> health_pb2.HealthCheckResponse.ServingStatus.ValueType:
    response = await asyncio.wait_for(watch.read(), 5)
    assert isinstance(response, health_pb2.HealthCheckResponse)  # not grpc.aio.EOF
    return response.status


def test_sigterm_goes_not_serving_refuses_calls_for_the_notice_then_exits(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "MODELYARD_DATA_DIR": str(tmp_path)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modelyard.cli",
            "serve",
            "registry",
            "--listen",
            f"127.0.0.1:{port}",
            "--grace",
            "5",
            "--drain-notice",
            "1.5",
            "--metrics-listen",
            "off",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        health = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + 30
        while True:
            try:
                status = health.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                break
            except grpc.RpcError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        assert status == health_pb2.HealthCheckResponse.SERVING
        registry = health_pb2.HealthCheckRequest(service="modelyard.v1.RegistryService")
        watch = health.Watch(registry)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        # In the notice window, on this connection and on a new one: calls refused, health answered.
        refused = []
        with grpc.insecure_channel(f"127.0.0.1:{port}") as fresh:
            for ch in (channel, fresh):
                with pytest.raises(grpc.RpcError) as failed:
                    registry_pb2_grpc.RegistryServiceStub(ch).ListModels(
                        registry_pb2.ListModelsRequest(), timeout=2
                    )
                refused.append((failed.value.code(), failed.value.details()))
            checked = health_pb2_grpc.HealthStub(fresh).Check(registry, timeout=2).status
        in_window = time.monotonic() - signalled
        assert refused == [(grpc.StatusCode.UNAVAILABLE, DRAINING)] * 2
        assert checked == health_pb2.HealthCheckResponse.NOT_SERVING
        assert in_window < 1.5, "the checks above took longer than the notice window"
        assert proc.wait(timeout=15) == 0
        assert time.monotonic() - signalled >= 1.5
        channel.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = proc.stdout.read() if proc.stdout else ""
    assert "NOT_SERVING; refusing new calls for 1.5s, then draining for up to 3.5s more" in output
