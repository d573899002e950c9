"""A server passing on the calls for services it does not serve: a worker in front of a registry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from conftest import StackFactory

from modelyard.assembly.stack import Stack
from modelyard.security.channels import PLAINTEXT
from modelyard.server.forwarding import Forwarder, forwardable
from modelyard.server.runtime import RunningServer, start_server
from modelyard_client.errors import ModelNotFound, error_from_rpc
from modelyard_client.v1 import common_pb2, registry_pb2, registry_pb2_grpc


@pytest.fixture
async def primary(make_stack: StackFactory) -> Stack:
    return await make_stack(roles=("registry",))


@pytest.fixture
async def worker(primary: Stack) -> AsyncIterator[RunningServer]:
    forwarders: list[Forwarder] = []

    def forward(served: list[str]) -> Forwarder:
        forwarders.append(Forwarder(primary.address, served, PLAINTEXT))
        return forwarders[-1]

    server = await start_server([], "127.0.0.1:0", forward=forward)
    yield server
    await server.server.stop(0)
    for forwarder in forwarders:
        await forwarder.close()


def _entry(model_id: str) -> common_pb2.ModelEntry:
    return common_pb2.ModelEntry(
        id=model_id, name=model_id, provider="custom", capabilities=[common_pb2.CAPABILITY_CHAT]
    )


async def test_unary_calls_and_their_typed_errors_come_back_as_the_primary_answers(
    primary: Stack, worker: RunningServer
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{worker.port}") as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        await stub.RegisterModel(registry_pb2.RegisterModelRequest(model=_entry("custom/a")))
        listed = await stub.ListModels(registry_pb2.ListModelsRequest())
        assert [m.id for m in listed.models] == ["custom/a"]
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.GetModel(registry_pb2.GetModelRequest(id="custom/nope"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    error = error_from_rpc(missing.value)  # the typed details crossed both hops
    assert isinstance(error, ModelNotFound) and error.model_id == "custom/nope"
    assert primary.catalog is not None and [m.id for m in primary.catalog.list()] == ["custom/a"]


async def test_a_stream_passes_on_piece_by_piece_and_a_cancel_reaches_the_primary(
    primary: Stack, worker: RunningServer
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{worker.port}") as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        watch = stub.WatchModels(registry_pb2.WatchModelsRequest())
        changes = aiter(watch)
        await anext(changes)  # the snapshot's end, or the first change
        await stub.RegisterModel(registry_pb2.RegisterModelRequest(model=_entry("custom/b")))
        seen: list[str] = []
        while "custom/b" not in seen:
            change = await asyncio.wait_for(anext(changes), 10)
            seen.append(change.model.id)
        assert primary.catalog is not None
        watch.cancel()
        for _ in range(100):  # the primary's watch ends with the worker's
            if not primary.catalog._watchers:
                break
            await asyncio.sleep(0.05)
        assert not primary.catalog._watchers


async def test_the_worker_answers_its_own_services(worker: RunningServer) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    await worker.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{worker.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service=""))
    # The worker's own status (the primary's registry is serving): not passed on.
    assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING


def test_only_the_callers_own_metadata_passes_on() -> None:
    metadata = [(":authority", "x"), ("user-agent", "grpc"), ("x-modelyard-key", "k"), ("a", "b")]
    assert forwardable(metadata) == [("x-modelyard-key", "k"), ("a", "b")]
