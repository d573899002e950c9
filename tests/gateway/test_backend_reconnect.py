"""`BackendPool.reconnect`: a new channel to a remote backend for the next call (the health
monitor's ``reconnect``), against a real BackendService on 127.0.0.1 that stops and
comes back on the same port."""

from __future__ import annotations

import grpc
import pytest
from support.scripted_engine import ScriptedEngine
from support.tcp_relay import TcpRelay

from modelyard.backends.host import BackendHost
from modelyard.backends.servicer import BackendServicer
from modelyard.gateway.backend_pool import BackendPool
from modelyard.server.runtime import RunningServer, bind, start_server
from modelyard_client.errors import BackendUnavailable
from modelyard_client.v1 import common_pb2

TIMEOUT_S = 5.0


async def _backend(address: str) -> RunningServer:
    host = BackendHost([ScriptedEngine()])
    await host.start()
    return await start_server([bind(BackendServicer(host))], address)


async def test_a_backend_back_on_its_port_is_reached_through_a_new_channel() -> None:
    backend = await _backend("127.0.0.1:0")
    relay = TcpRelay(backend.port)  # the backend's address as callers know it
    await relay.start()
    endpoint = f"127.0.0.1:{relay.port}"
    deployment = common_pb2.Deployment(backend="scripted", endpoint=endpoint)
    pool = BackendPool()
    try:
        assert (await pool.health(deployment, TIMEOUT_S)).status == common_pb2.HEALTH_STATUS_HEALTHY
        old = pool._channels[endpoint]
        await relay.stop()  # the backend went away: connections cut, then refused
        for _ in range(2):  # the old channel: refused, then waiting out its backoff
            with pytest.raises(BackendUnavailable):
                await pool.health(deployment, TIMEOUT_S)
        await relay.start()  # back, on the same port
        assert await pool.reconnect(endpoint, grace_s=0.1) is True
        assert old.get_state() == grpc.ChannelConnectivity.SHUTDOWN
        reply = await pool.health(deployment, TIMEOUT_S)  # at once: no backoff to wait out
        assert reply.status == common_pb2.HEALTH_STATUS_HEALTHY
        assert pool._channels[endpoint] is not old
    finally:
        await pool.close()
        await relay.stop()
        await backend.server.stop(0)


async def test_nothing_to_reconnect_in_process_or_before_a_first_call() -> None:
    pool = BackendPool()
    host = BackendHost([ScriptedEngine()])
    pool.add_in_process("127.0.0.1:1", host)
    assert await pool.reconnect("127.0.0.1:1") is False  # called directly: no channel
    assert await pool.reconnect("127.0.0.1:2") is False  # never called: none open
    await pool.close()
