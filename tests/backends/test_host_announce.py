"""A backend announces every model the registry accepts; one it refuses does not stop the rest."""

from __future__ import annotations

import grpc
import pytest
from conftest import StackFactory
from support.scripted_engine import ScriptedEngine

from modelyard.backends.host import BackendHost
from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import registry_pb2, registry_pb2_grpc


async def test_an_entry_the_registry_refuses_is_left_out_and_the_others_announced(
    make_stack: StackFactory,
) -> None:
    registry = await make_stack(roles=("registry",))
    host = BackendHost([ScriptedEngine(("scripted/a", "scripted/../b", "scripted/c"))])
    await host.start()
    announced = await host.announce(registry.address, host.models("127.0.0.1:9"))
    async with grpc.aio.insecure_channel(registry.address) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        listed = await stub.ListModels(registry_pb2.ListModelsRequest())
    assert announced == 2
    assert [m.id for m in listed.models] == ["scripted/a", "scripted/c"]


async def test_a_backend_whose_every_entry_is_refused_says_why(make_stack: StackFactory) -> None:
    registry = await make_stack(roles=("registry",))
    host = BackendHost([ScriptedEngine(("scripted/a",))])
    await host.start()
    with pytest.raises(InvalidRequest) as refused:
        await host.announce(registry.address, host.models("nowhere"))
    assert refused.value.field == "deployments[0].endpoint"
