"""A gateway worker's own engines beside its primary's backend: which calls stay here."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from support.scripted_engine import ScriptedEngine

from modelyard.backends.host import BackendHost
from modelyard.backends.servicer import BackendServicer
from modelyard.gateway.backend_pool import BackendPool
from modelyard.server.runtime import RunningServer, bind, start_server
from modelyard_client.v1 import backend_pb2, common_pb2


@pytest.fixture
async def primary() -> AsyncIterator[RunningServer]:
    """The primary's backend: a remote provider's model and a local one."""
    engine = ScriptedEngine(("remote/x", "local/y"), pieces=("from", " primary"))
    host = BackendHost([engine], name="primary")
    await host.start()
    server = await start_server([bind(BackendServicer(host))], "127.0.0.1:0")
    yield server
    await server.server.stop(0)


async def _text(pool: BackendPool, endpoint: str, model_id: str) -> str:
    deployment = common_pb2.Deployment(backend="scripted", endpoint=endpoint)
    request = backend_pb2.InferRequest(model_id=model_id, input=common_pb2.Input(text="hi"))
    return "".join([c.text async for c in pool.infer_stream(deployment, request, 10.0)])


async def test_the_models_served_beside_stay_here_and_the_rest_go_to_the_primary(
    primary: RunningServer,
) -> None:
    endpoint = f"127.0.0.1:{primary.port}"
    beside = BackendHost([ScriptedEngine(("remote/x",), pieces=("from", " here"))], name="here")
    await beside.start()
    pool = BackendPool()
    assert await _text(pool, endpoint, "remote/x") == "from primary"  # nothing beside yet
    pool.add_beside(endpoint, beside)
    try:
        assert await _text(pool, endpoint, "remote/x") == "from here"
        assert await _text(pool, endpoint, "local/y") == "from primary"
        health = await pool.health(common_pb2.Deployment(backend="scripted", endpoint=endpoint))
        assert health.backend == "primary"  # health is the primary's own
    finally:
        await pool.close()
