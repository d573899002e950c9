"""Versions (register, list, pin, follow latest) and providers added and removed at run time."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from conftest import StackFactory, StorePlace

from modelyard.registry.catalog import Catalog
from modelyard.registry.providers import Providers
from modelyard.registry.store import CatalogStore
from modelyard.registry.versions import ModelVersions
from modelyard_client.errors import InvalidRequest, ModelNotFound, NotFound
from modelyard_client.v1 import common_pb2, registry_pb2, registry_pb2_grpc


def _entry(model_id: str, version: str = "", **fields: Any) -> common_pb2.ModelEntry:
    provider = model_id.split("/")[0]
    return common_pb2.ModelEntry(id=model_id, provider=provider, version=version, **fields)


def _open(place: StorePlace) -> tuple[Catalog, ModelVersions, Providers]:
    catalog = Catalog(CatalogStore(place("r.sqlite3")))
    return catalog, ModelVersions(catalog), Providers(catalog)


def test_new_versions_become_current_unless_pinned_and_survive_restart(
    store_place: StorePlace,
) -> None:
    catalog, versions, _ = _open(store_place)
    versions.register(_entry("custom/m", "1", context_window=1000), make_current=False)
    assert catalog.get("custom/m").version == "1"  # the first version is current
    versions.register(_entry("custom/m", "2", context_window=2000), make_current=False)
    assert catalog.get("custom/m").version == "2"  # following the latest
    versions.pin("custom/m", "1")
    versions.register(_entry("custom/m", "3"), make_current=False)
    assert catalog.get("custom/m").version == "1"  # pinned: a new version waits
    assert [e.version for e in versions.list("custom/m")] == ["1", "2", "3"]
    assert versions.get("custom/m", "2").context_window == 2000
    catalog.close()

    catalog, versions, _ = _open(store_place)
    assert catalog.get("custom/m").version == "1"
    versions.register(_entry("custom/m", "4"), make_current=False)
    assert catalog.get("custom/m").version == "1"  # the pin survived the restart
    versions.pin("custom/m", "")  # follow the latest again
    assert catalog.get("custom/m").version == "4"
    versions.register(_entry("custom/m", "5"), make_current=True)
    assert catalog.get("custom/m").version == "5"


def test_make_current_moves_a_pin(store_place: StorePlace) -> None:
    catalog, versions, _ = _open(store_place)
    versions.register(_entry("custom/m", "1"), make_current=False)
    versions.pin("custom/m", "1")
    versions.register(_entry("custom/m", "2"), make_current=True)
    assert catalog.get("custom/m").version == "2"
    versions.register(_entry("custom/m", "3"), make_current=False)
    assert catalog.get("custom/m").version == "2"  # pinned to 2 now


def test_version_errors(store_place: StorePlace) -> None:
    catalog, versions, _ = _open(store_place)
    with pytest.raises(InvalidRequest, match="version must not be empty"):
        versions.register(_entry("custom/m"), make_current=True)
    versions.register(_entry("custom/m", "1"), make_current=True)
    with pytest.raises(ModelNotFound, match=r"custom/m@9"):
        versions.pin("custom/m", "9")
    with pytest.raises(ModelNotFound):
        versions.list("custom/nope")
    assert catalog.get("custom/m").version == "1"


def test_fine_tuned_and_custom_models_register_like_any_other(store_place: StorePlace) -> None:
    catalog, versions, _ = _open(store_place)
    tuned = _entry("openai/ft:gpt-4o-mini:acme:support:abc123", "2026-11-01")
    tuned.metadata["base_model"] = "openai/gpt-4o-mini"
    versions.register(tuned, make_current=True)
    gguf = _entry("local/my-finetune-q4", metadata={"path": "/models/my-finetune-q4.gguf"})
    catalog.register(gguf, upsert=False)
    assert {e.id for e in catalog.list()} == {tuned.id, gguf.id}


def test_removed_provider_models_become_unavailable_not_forgotten(store_place: StorePlace) -> None:
    catalog, _, providers = _open(store_place)
    providers.add(registry_pb2.Provider(name="ollama", kind="ollama", endpoint="http://x:11434"))
    catalog.register(_entry("ollama/gemma3:4b"), upsert=False)
    catalog.register(_entry("local/g"), upsert=False)
    assert providers.remove("ollama") == 1
    assert [e.id for e in catalog.list()] == ["local/g"]
    kept = catalog.get("ollama/gemma3:4b")
    assert kept.health == common_pb2.HEALTH_STATUS_UNAVAILABLE
    assert kept.health_reason == "provider 'ollama' was removed"
    with pytest.raises(NotFound, match="provider 'ollama' is not registered"):
        providers.remove("ollama")
    catalog.close()

    catalog, _, providers = _open(store_place)
    assert providers.list() == []
    providers.add(registry_pb2.Provider(name="ollama", kind="ollama"))
    assert catalog.get("ollama/gemma3:4b").health == common_pb2.HEALTH_STATUS_HEALTHY
    assert [p.name for p in providers.list()] == ["ollama"]


def test_capability_index_follows_changes(store_place: StorePlace) -> None:
    catalog, _, _ = _open(store_place)
    vision, tools = common_pb2.CAPABILITY_VISION, common_pb2.CAPABILITY_TOOLS
    catalog.register(_entry("a/x", capabilities=[vision, tools]), upsert=False)
    catalog.register(_entry("a/y", capabilities=[vision]), upsert=False)
    assert [e.id for e in catalog.list(capabilities=[vision])] == ["a/x", "a/y"]
    assert [e.id for e in catalog.list(capabilities=[vision, tools])] == ["a/x"]
    catalog.register(_entry("a/x", capabilities=[tools]), upsert=True)
    assert [e.id for e in catalog.list(capabilities=[vision])] == ["a/y"]
    catalog.unregister("a/y")
    assert catalog.list(capabilities=[vision]) == []


def test_unchanged_writes_do_not_bump_the_revision(store_place: StorePlace) -> None:
    catalog, _, _ = _open(store_place)
    catalog.register(_entry("a/x", context_window=5), upsert=False)
    catalog.register(_entry("a/x", context_window=5), upsert=True)
    assert catalog.revision == 1


async def test_versions_and_providers_over_grpc(make_stack: StackFactory) -> None:
    stack = await make_stack(roles=("registry",))
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        for version in ("1", "2"):
            await stub.RegisterModelVersion(
                registry_pb2.RegisterModelVersionRequest(model=_entry("custom/m", version))
            )
        listed = await stub.ListModelVersions(registry_pb2.ListModelVersionsRequest(id="custom/m"))
        assert [m.version for m in listed.models] == ["1", "2"]
        pinned = await stub.PinModelVersion(
            registry_pb2.PinModelVersionRequest(id="custom/m", version="1")
        )
        assert pinned.version == "1"
        old = await stub.GetModel(registry_pb2.GetModelRequest(id="custom/m", version="2"))
        assert old.version == "2"
        await stub.AddProvider(
            registry_pb2.AddProviderRequest(
                provider=registry_pb2.Provider(name="custom", kind="openai_compat")
            )
        )
        removed = await stub.RemoveProvider(registry_pb2.RemoveProviderRequest(name="custom"))
        assert removed.models_made_unavailable == 1
        visible = await stub.ListModels(registry_pb2.ListModelsRequest())
        assert list(visible.models) == []
        everything = await stub.ListModels(registry_pb2.ListModelsRequest(include_unavailable=True))
        assert [m.health_reason for m in everything.models] == ["provider 'custom' was removed"]
        perf = await stub.UpdatePerformance(
            registry_pb2.UpdatePerformanceRequest(
                id="custom/m", performance=common_pb2.PerformanceProfile(latency_ms_p50=12.5)
            )
        )
        assert perf.performance.latency_ms_p50 == 12.5
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub.UpdatePerformance(
                registry_pb2.UpdatePerformanceRequest(
                    id="custom/m", performance=common_pb2.PerformanceProfile(tokens_per_second=-1)
                )
            )
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
