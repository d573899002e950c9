"""A model's evaluated quality in the registry (killing mutmut's survivors in
`registry.catalog.Catalog.update_quality` and `registry.discovery_sync._merge`,
docs/testing.md, the fifth run, and `registry.catalog.Catalog.register` 17-21, the
fifth run resumed): `UpdateQuality` stores the quality, answers the updated entry and
tells watchers it changed; a bad quality is refused naming the model; registering the
model again, or discovery finding it again, keeps the quality the registry measured,
and a quality the registration or the source brings itself wins over it.

`UpdateQuality` and `RegisterModel` over real gRPC (the registry's in-process server on a
free port), as the gateway's evaluation and a backend announcing itself call them;
discovery through `apply_snapshot` on a real catalog.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import StackFactory

from modelyard.discovery.source import SourceSnapshot
from modelyard.registry.catalog import Catalog
from modelyard.registry.discovery_sync import apply_snapshot
from modelyard.registry.store import CatalogStore
from modelyard_client.v1 import common_pb2, registry_pb2, registry_pb2_grpc

C = common_pb2
Change = registry_pb2.ModelChange
DEPLOY = C.Deployment(backend="ollama", endpoint="127.0.0.1:7001")


async def _read(watch: grpc.aio.UnaryStreamCall[registry_pb2.WatchModelsRequest, Change]) -> Change:
    change = await asyncio.wait_for(watch.read(), 5)
    assert isinstance(change, Change)  # not grpc.aio.EOF
    return change


async def test_update_quality_stores_it_answers_the_entry_and_tells_watchers(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack(roles=("registry",))
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        model = C.ModelEntry(id="custom/m1", provider="custom", context_window=4096)
        registered = await stub.RegisterModel(registry_pb2.RegisterModelRequest(model=model))
        watch = stub.WatchModels(
            registry_pb2.WatchModelsRequest(after_revision=registered.revision)
        )
        assert (await _read(watch)).kind == Change.KIND_SYNCED

        quality = C.ModelQuality(score=0.75, suite="smoke-10")
        updated = await stub.UpdateQuality(
            registry_pb2.UpdateQualityRequest(id="custom/m1", quality=quality)
        )
        assert updated.id == "custom/m1"
        assert updated.quality == quality
        assert updated.context_window == 4096  # the rest of the entry as it was
        assert updated.revision == registered.revision + 1

        change = await _read(watch)
        assert (change.kind, change.revision) == (Change.KIND_UPSERTED, updated.revision)
        assert change.model == updated
        watch.cancel()

        got = await stub.GetModel(registry_pb2.GetModelRequest(id="custom/m1"))
        assert got == updated


async def test_a_quality_out_of_range_is_refused_naming_the_model(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack(roles=("registry",))
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        model = C.ModelEntry(id="custom/m1", provider="custom", context_window=4096)
        await stub.RegisterModel(registry_pb2.RegisterModelRequest(model=model))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.UpdateQuality(
                registry_pb2.UpdateQualityRequest(
                    id="custom/m1", quality=C.ModelQuality(score=1.5, suite="smoke-10")
                )
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details() == (
            "model 'custom/m1': quality.score must be between 0 and 1, got 1.5"
        )
        got = await stub.GetModel(registry_pb2.GetModelRequest(id="custom/m1"))
        assert not got.HasField("quality")


async def _evaluated(stub: registry_pb2_grpc.RegistryServiceAsyncStub) -> C.ModelEntry:
    """custom/m1 registered, then its quality measured (0.75 on smoke-10)."""
    model = C.ModelEntry(id="custom/m1", provider="custom", context_window=4096)
    await stub.RegisterModel(registry_pb2.RegisterModelRequest(model=model))
    return await stub.UpdateQuality(
        registry_pb2.UpdateQualityRequest(
            id="custom/m1", quality=C.ModelQuality(score=0.75, suite="smoke-10")
        )
    )


async def test_registering_an_evaluated_model_again_without_a_quality_keeps_the_measured_one(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack(roles=("registry",))
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        evaluated = await _evaluated(stub)
        again = C.ModelEntry(id="custom/m1", provider="custom", context_window=8192)
        stored = await stub.RegisterModel(
            registry_pb2.RegisterModelRequest(model=again, upsert=True)
        )
        assert stored.context_window == 8192  # the registration's fields, but its quality:
        assert stored.quality == C.ModelQuality(score=0.75, suite="smoke-10")
        assert stored.revision == evaluated.revision + 1
        got = await stub.GetModel(registry_pb2.GetModelRequest(id="custom/m1"))
        assert got == stored


async def test_registering_an_evaluated_model_again_with_a_quality_stores_the_one_it_brings(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack(roles=("registry",))
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        await _evaluated(stub)
        brought = C.ModelQuality(score=0.5, suite="vendor")
        again = C.ModelEntry(id="custom/m1", provider="custom", context_window=4096)
        again.quality.CopyFrom(brought)
        stored = await stub.RegisterModel(
            registry_pb2.RegisterModelRequest(model=again, upsert=True)
        )
        assert stored.quality == brought
        got = await stub.GetModel(registry_pb2.GetModelRequest(id="custom/m1"))
        assert got.quality == brought


def _found(model_id: str, **fields: Any) -> C.ModelEntry:
    return C.ModelEntry(id=model_id, provider="ollama", context_window=8192, **fields)


def test_a_rediscovered_model_keeps_the_quality_the_registry_measured(tmp_path: Path) -> None:
    catalog = Catalog(CatalogStore(tmp_path / "r.sqlite3"))
    apply_snapshot(catalog, SourceSnapshot("ollama", (_found("ollama/a"),)), [DEPLOY])
    measured = C.ModelQuality(score=0.6, suite="smoke-10")
    catalog.update_quality("ollama/a", measured)
    result = apply_snapshot(
        catalog, SourceSnapshot("ollama", (_found("ollama/a", name="renamed"),)), [DEPLOY]
    )
    assert (result.added, result.updated, result.errors) == (0, 1, [])
    entry = catalog.get("ollama/a")
    assert entry.name == "renamed"
    assert entry.quality == measured


def test_a_quality_the_source_reports_wins_over_the_stored_one(tmp_path: Path) -> None:
    catalog = Catalog(CatalogStore(tmp_path / "r.sqlite3"))
    apply_snapshot(catalog, SourceSnapshot("ollama", (_found("ollama/a"),)), [DEPLOY])
    catalog.update_quality("ollama/a", C.ModelQuality(score=0.6, suite="smoke-10"))
    reported = C.ModelQuality(score=0.9, suite="vendor")
    apply_snapshot(
        catalog, SourceSnapshot("ollama", (_found("ollama/a", quality=reported),)), [DEPLOY]
    )
    assert catalog.get("ollama/a").quality == reported
