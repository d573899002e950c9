"""Every server answers health and reflection, and drains in-flight calls on stop."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from conftest import StackFactory, free_port
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from support.scripted_engine import ScriptedEngine

from modelyard.v1 import gateway_pb2, gateway_pb2_grpc

ALL_SERVICES = {
    "modelyard.v1.RegistryService",
    "modelyard.v1.SelectorService",
    "modelyard.v1.HotSwapService",
    "modelyard.v1.GatewayService",
    "modelyard.v1.BackendService",
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


async def test_drain_finishes_in_flight_calls_and_refuses_new_ones(
    make_stack: StackFactory,
) -> None:
    engine = ScriptedEngine(pieces=("a", "b", "c", "d"), delay_s=0.15)
    stack = await make_stack(roles=("registry", "gateway"), engines=[engine])
    req = gateway_pb2.GenerateRequest(model="scripted/echo")
    req.input.text = "hi"
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        gateway = health_pb2.HealthCheckRequest(service="modelyard.v1.GatewayService")
        watch = health.Watch(gateway, timeout=10)
        assert await _status(watch) == health_pb2.HealthCheckResponse.SERVING
        in_flight = asyncio.ensure_future(stub.Generate(req, timeout=10))
        await asyncio.wait_for(engine.called.wait(), 5)
        drain = asyncio.create_task(stack.stop(grace_s=5))  # what SIGTERM runs
        assert await _status(watch) == health_pb2.HealthCheckResponse.NOT_SERVING
        watch.cancel()  # an open watch would hold the drain for its whole grace period
        # In the grace window, while the first call still streams: a new call is
        # refused, and health checks are answered NOT_SERVING.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Generate(req, timeout=2)
        checked = await health.Check(gateway, timeout=2)
        assert not in_flight.done()
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert refused.value.details() == "this server is draining; call another instance"
        assert checked.status == health_pb2.HealthCheckResponse.NOT_SERVING
        reply = await in_flight
        assert reply.text == "abcd"  # the call that was running finished
        assert len(engine.calls) == 1  # the refused one never reached the engine
        await drain


async def _status(
    watch: grpc.aio.UnaryStreamCall[health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse],
) -> health_pb2.HealthCheckResponse.ServingStatus.ValueType:
    response = await asyncio.wait_for(watch.read(), 5)
    assert isinstance(response, health_pb2.HealthCheckResponse)  # not grpc.aio.EOF
    return response.status


def test_sigterm_reports_not_serving_then_exits(tmp_path: Path) -> None:
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
            "3",
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
        watch = health.Watch(health_pb2.HealthCheckRequest(service="modelyard.v1.RegistryService"))
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        proc.send_signal(signal.SIGTERM)
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert proc.wait(timeout=15) == 0
        channel.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = proc.stdout.read() if proc.stdout else ""
    assert "draining" in output
