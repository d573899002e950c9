"""Versions, providers and listings: behaviours mutation testing found unchecked.

See docs/testing.md. In process over a SQLite catalog; pins and versions are
read back after a restart, every message compared whole.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from modelyard.registry.catalog import Catalog
from modelyard.registry.providers import Providers
from modelyard.registry.servicer import Ctx, Registry, RegistryServicer
from modelyard.registry.store import CatalogStore
from modelyard.registry.versions import ModelVersions
from modelyard_client.errors import InvalidRequest, ModelNotFound
from modelyard_client.v1 import common_pb2, registry_pb2

C = common_pb2
NO_CONTEXT = cast(Ctx, None)


def _entry(model_id: str, backend: str = "ollama", **fields: Any) -> C.ModelEntry:
    entry = C.ModelEntry(id=model_id, provider=model_id.split("/")[0], **fields)
    entry.deployments.add(backend=backend, endpoint="127.0.0.1:7001")
    return entry


def test_make_current_moves_a_pin_and_the_pin_outlives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    catalog = Catalog(CatalogStore(path))
    versions = ModelVersions(catalog)
    versions.register(_entry("ollama/a", version="1"), make_current=False)
    versions.register(_entry("ollama/a", version="2"), make_current=False)
    versions.pin("ollama/a", "1")
    versions.register(_entry("ollama/a", version="3"), make_current=False)
    assert catalog.get("ollama/a").version == "1"  # pinned: a new version waits
    versions.register(_entry("ollama/a", version="4"), make_current=True)
    assert catalog.get("ollama/a").version == "4"
    # The pin moved to 4: a later version still waits.
    versions.register(_entry("ollama/a", version="5"), make_current=False)
    assert catalog.get("ollama/a").version == "4"
    catalog.close()
    catalog = Catalog(CatalogStore(path))
    reopened = ModelVersions(catalog)
    assert [e.version for e in reopened.list("ollama/a")] == ["1", "2", "3", "4", "5"]
    reopened.register(_entry("ollama/a", version="6"), make_current=False)
    assert catalog.get("ollama/a").version == "4"


def test_an_empty_pin_follows_the_latest_again(tmp_path: Path) -> None:
    catalog = Catalog(CatalogStore(tmp_path / "r.sqlite3"))
    versions = ModelVersions(catalog)
    versions.register(_entry("ollama/a", version="1"), make_current=False)
    versions.register(_entry("ollama/a", version="2"), make_current=False)
    assert versions.pin("ollama/a", "1").version == "1"
    assert versions.pin("ollama/a", "").version == "2"
    versions.register(_entry("ollama/a", version="3"), make_current=False)
    assert catalog.get("ollama/a").version == "3"
    # A model registered without versions: pinning nothing returns it as it is.
    catalog.register(_entry("ollama/plain"), upsert=False)
    assert versions.pin("ollama/plain", "").id == "ollama/plain"


def test_unknown_versions_and_models_name_what_was_missing(tmp_path: Path) -> None:
    versions = ModelVersions(Catalog(CatalogStore(tmp_path / "r.sqlite3")))
    versions.register(_entry("ollama/a", version="1"), make_current=False)
    with pytest.raises(ModelNotFound) as caught:
        versions.get("ollama/a", "9")
    assert str(caught.value) == "model 'ollama/a@9' is not in the registry"
    with pytest.raises(ModelNotFound) as caught:
        versions.list("ollama/nope")
    assert caught.value.model_id == "ollama/nope"


async def test_list_models_applies_every_filter(tmp_path: Path) -> None:
    catalog = Catalog(CatalogStore(tmp_path / "r.sqlite3"))
    catalog.register(_entry("ollama/a", capabilities=[C.CAPABILITY_CHAT]), upsert=False)
    catalog.register(_entry("ollama/b", backend="local"), upsert=False)
    catalog.register(_entry("acme/c", capabilities=[C.CAPABILITY_CHAT]), upsert=False)
    servicer = RegistryServicer(Registry(catalog))

    async def ids(**filters: Any) -> list[str]:
        request = registry_pb2.ListModelsRequest(**filters)
        return [m.id for m in (await servicer.ListModels(request, NO_CONTEXT)).models]

    assert await ids() == ["acme/c", "ollama/a", "ollama/b"]
    assert await ids(provider="ollama") == ["ollama/a", "ollama/b"]
    assert await ids(backend="local") == ["ollama/b"]
    assert await ids(capabilities=[C.CAPABILITY_CHAT]) == ["acme/c", "ollama/a"]


def test_provider_refusals_are_the_whole_message(tmp_path: Path) -> None:
    providers = Providers(Catalog(CatalogStore(tmp_path / "r.sqlite3")))
    with pytest.raises(InvalidRequest) as caught:
        providers.add(registry_pb2.Provider(name="acme"))
    assert str(caught.value) == "provider 'acme': kind must not be empty"


def test_adding_a_provider_back_restores_only_its_own_models(tmp_path: Path) -> None:
    catalog = Catalog(CatalogStore(tmp_path / "r.sqlite3"))
    providers = Providers(catalog)
    providers.add(registry_pb2.Provider(name="acme", kind="ollama"))
    catalog.register(_entry("acme/a"), upsert=False)
    catalog.register(_entry("other/b"), upsert=False)
    providers.remove("acme")
    # Another provider's model that happens to carry the same reason stays as it is.
    catalog.update_health("other/b", C.HEALTH_STATUS_UNAVAILABLE, "provider 'acme' was removed")
    providers.add(registry_pb2.Provider(name="acme", kind="ollama"))
    restored = catalog.get("acme/a")
    assert (restored.health, restored.health_reason) == (C.HEALTH_STATUS_HEALTHY, "")
    assert catalog.get("other/b").health == C.HEALTH_STATUS_UNAVAILABLE


async def test_catalog_reads_name_the_registry_and_tolerate_unknown_capabilities(
    tmp_path: Path,
) -> None:
    catalog = Catalog(CatalogStore(tmp_path / "r.sqlite3"))
    with pytest.raises(ModelNotFound) as caught:
        catalog.get("ollama/nope")
    assert str(caught.value) == "model 'ollama/nope' is not in the registry"
    catalog.register(_entry("ollama/a", capabilities=[C.CAPABILITY_CHAT]), upsert=False)
    assert catalog.list(capabilities=[C.CAPABILITY_CHAT, C.CAPABILITY_VISION]) == []
    watch = catalog.watch(0)
    snapshot = await anext(watch)
    assert (snapshot.model.id, snapshot.revision) == ("ollama/a", catalog.get("ollama/a").revision)
    catalog.unregister("ollama/a")
    await anext(watch)  # SYNCED
    removed = await anext(watch)
    assert (removed.model.id, removed.model.provider) == ("ollama/a", "ollama")
    await watch.aclose()
