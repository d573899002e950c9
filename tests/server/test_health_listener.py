"""The plaintext health-only listener (`start_server(health_address=...)`): what the
kubelet's native gRPC probes reach while the services themselves talk mTLS."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelyard.config.security import TlsConfig
from modelyard.security.dev_certs import write_dev_certs
from modelyard.security.tls import server_credentials
from modelyard.server.runtime import start_server
from modelyard_client.v1 import gateway_pb2, gateway_pb2_grpc

H = health_pb2.HealthCheckResponse


async def _status(port: int) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
    return int(reply.status)


async def test_an_mtls_server_answers_plaintext_probes_on_its_health_port_only(
    tmp_path: Path,
) -> None:
    certs = write_dev_certs(tmp_path / "certs")
    tls = TlsConfig(mode="mtls", cert=certs.server_cert, key=certs.server_key, ca=certs.ca)
    server = await start_server(
        [], "127.0.0.1:0", credentials=server_credentials(tls), health_address="127.0.0.1:0"
    )
    try:
        assert server.health_port and server.health_port != server.port
        assert await _status(server.health_port) == H.SERVING
        # Nothing but health there: the gateway's RPCs are not on it.
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.health_port}") as channel:
            stub = gateway_pb2_grpc.GatewayServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Generate(gateway_pb2.GenerateRequest(), timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
        # The mTLS port still refuses a plaintext client.
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError):
                await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=2
                )
        # Draining: the probe port says NOT_SERVING through the notice window.
        drain = asyncio.create_task(server.drain(grace_s=2.0, notice_s=0.5))
        await asyncio.sleep(0.1)
        assert await _status(server.health_port) == H.NOT_SERVING
        await drain
    finally:
        await server.server.stop(0)
        if server.health_server is not None:
            await server.health_server.stop(0)


async def test_a_health_port_in_use_is_a_clear_start_failure() -> None:
    first = await start_server([], "127.0.0.1:0", health_address="127.0.0.1:0")
    try:
        taken = f"127.0.0.1:{first.health_port}"
        with pytest.raises(OSError, match=f"cannot listen on {taken} \\(health\\)"):
            await start_server([], "127.0.0.1:0", health_address=taken)
    finally:
        await first.server.stop(0)
        assert first.health_server is not None
        await first.health_server.stop(0)
