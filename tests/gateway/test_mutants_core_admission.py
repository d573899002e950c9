"""The gateway's own bound on calls in flight, as `GatewayCore` answers it (killing the
second run's open `gateway.core.GatewayCore.generate_stream__mutmut_46`: the "gateway is
full" check asked of `None` instead of the error, so a full gateway's refusal was taken
for a model's failure and the chain went on to the request's fallbacks).

The core runs on a real `CatalogView`, `BackendPool` and in-process `BackendHost` with a
`ScriptedEngine`; the test holds the gateway's one slot itself.
"""

from __future__ import annotations

import pytest
from support.scripted_engine import ScriptedEngine

from modelyard.backends.admission import gateway_admission
from modelyard.backends.host import BackendHost
from modelyard.gateway.backend_pool import BackendPool
from modelyard.gateway.catalog_view import CatalogView
from modelyard.gateway.core import GatewayCore
from modelyard_client.errors import ModelyardError, Overloaded
from modelyard_client.v1 import common_pb2, gateway_pb2, registry_pb2

Change = registry_pb2.ModelChange
ENDPOINT = "127.0.0.1:1"  # never dialled: the pool calls the host in this process
FIRST, FALLBACK = "scripted/echo", "scripted/coder"


async def test_a_full_gateway_refuses_the_call_itself_and_tries_no_fallback() -> None:
    engine = ScriptedEngine((FIRST, FALLBACK))
    view = CatalogView()
    for revision, entry in enumerate(engine.models(), 1):
        entry.health = common_pb2.HEALTH_STATUS_HEALTHY
        entry.deployments.add(
            backend="scripted", endpoint=ENDPOINT, health=common_pb2.HEALTH_STATUS_HEALTHY
        )
        view.apply(Change(kind=Change.KIND_UPSERTED, revision=revision, model=entry))
    host = BackendHost([engine])
    await host.start()
    pool = BackendPool()
    pool.add_in_process(ENDPOINT, host)
    admission = gateway_admission(1)
    core = GatewayCore(view, pool, in_flight=admission)
    request = gateway_pb2.GenerateRequest(model=FIRST, fallback_models=[FALLBACK])
    request.input.text = "hello"
    request.params.max_tokens = 4

    async with admission.slot():  # another call holds the gateway's only slot
        with pytest.raises(ModelyardError) as refused:
            await core.generate(request)
    error = refused.value
    assert type(error) is Overloaded
    assert error.scope == "gateway"
    assert error.message == (
        "this gateway is at capacity: 1 call(s) running and 0 waiting "
        "(gateway.max_in_flight=1); retry after 1.000s"
    )
    assert engine.calls == []  # neither the model nor its fallback was called
    assert admission.shed == 1  # refused once: no fallback asked for a slot
    # With the slot free again the same request is answered by the model it names.
    assert (await core.generate(request)).model_id == FIRST
    assert [model for model, _, _ in engine.calls] == [FIRST]
