"""RegistryService over real gRPC: errors map to status codes, watch streams changes."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from conftest import StackFactory

from modelyard_client.v1 import common_pb2, registry_pb2, registry_pb2_grpc


async def test_register_list_get_watch_over_grpc(make_stack: StackFactory) -> None:
    stack = await make_stack(roles=("registry",))
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        watch = stub.WatchModels(registry_pb2.WatchModelsRequest())
        first = await asyncio.wait_for(watch.read(), 5)
        assert isinstance(first, registry_pb2.ModelChange)  # not grpc.aio.EOF
        assert first.kind == registry_pb2.ModelChange.KIND_SYNCED

        model = common_pb2.ModelEntry(id="custom/m1", provider="custom", context_window=4096)
        stored = await stub.RegisterModel(registry_pb2.RegisterModelRequest(model=model))
        assert stored.revision == 1
        change = await asyncio.wait_for(watch.read(), 5)
        assert isinstance(change, registry_pb2.ModelChange)
        assert (change.kind, change.model.id) == (
            registry_pb2.ModelChange.KIND_UPSERTED,
            "custom/m1",
        )
        watch.cancel()

        listed = await stub.ListModels(registry_pb2.ListModelsRequest())
        assert [m.id for m in listed.models] == ["custom/m1"] and listed.revision == 1
        got = await stub.GetModel(registry_pb2.GetModelRequest(id="custom/m1"))
        assert got.context_window == 4096

        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.GetModel(registry_pb2.GetModelRequest(id="custom/nope"))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        assert "'custom/nope'" in (missing.value.details() or "")

        with pytest.raises(grpc.aio.AioRpcError) as dup:
            await stub.RegisterModel(registry_pb2.RegisterModelRequest(model=model))
        assert dup.value.code() == grpc.StatusCode.ALREADY_EXISTS

        bad = common_pb2.ModelEntry(id="custom/m2", provider="custom", input_schema_json="{")
        with pytest.raises(grpc.aio.AioRpcError) as invalid:
            await stub.RegisterModel(registry_pb2.RegisterModelRequest(model=bad))
        assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "input_schema_json" in (invalid.value.details() or "")

        with pytest.raises(grpc.aio.AioRpcError) as unnamed:
            await stub.AddProvider(registry_pb2.AddProviderRequest())
        assert unnamed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "provider name ''" in (unnamed.value.details() or "")

        with pytest.raises(grpc.aio.AioRpcError) as no_discovery:
            await stub.Discover(registry_pb2.DiscoverRequest())
        assert no_discovery.value.code() == grpc.StatusCode.FAILED_PRECONDITION
