"""Registry service behaviours that mutation testing found unchecked (docs/testing.md).

The servicer's methods are called in process (they do not read the context):
each answer's every field, providers kept across a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any, cast

import pytest

from modelyard.discovery.source import SourceSnapshot
from modelyard.registry.catalog import Catalog
from modelyard.registry.discovery_loop import DiscoveryLoop, SourceBinding
from modelyard.registry.providers import Providers
from modelyard.registry.servicer import Ctx, Registry, RegistryServicer
from modelyard.registry.store import CatalogStore
from modelyard_client.errors import BackendUnavailable, FailedPrecondition, InvalidRequest
from modelyard_client.v1 import common_pb2, registry_pb2

C = common_pb2
NO_CONTEXT = cast(Ctx, None)
DEPLOY = C.Deployment(backend="ollama", endpoint="127.0.0.1:7001")


class ListSource:
    def __init__(self, name: str, *ids: str) -> None:
        self.name = name
        self.ids = list(ids)
        self.fail = ""

    async def discover(self) -> SourceSnapshot:
        if self.fail:
            raise BackendUnavailable(self.fail)
        entries = tuple(C.ModelEntry(id=i, provider=self.name, name=i) for i in self.ids)
        return SourceSnapshot(self.name, entries)


def _entry(model_id: str, **fields: Any) -> C.ModelEntry:
    entry = C.ModelEntry(id=model_id, provider=model_id.split("/")[0], **fields)
    entry.deployments.append(DEPLOY)
    return entry


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return Catalog(CatalogStore(tmp_path / "r.sqlite3"))


async def test_discover_without_sources_is_a_failed_precondition(catalog: Catalog) -> None:
    with pytest.raises(FailedPrecondition) as caught:
        await RegistryServicer(Registry(catalog)).Discover(
            registry_pb2.DiscoverRequest(), NO_CONTEXT
        )
    assert str(caught.value) == "this registry has no discovery sources configured"


async def test_discover_reports_every_count_and_error_of_the_pass(catalog: Catalog) -> None:
    one, two = ListSource("one", "one/a", "one/b"), ListSource("two", "two/a")
    loop = DiscoveryLoop(catalog, [SourceBinding(one, [DEPLOY]), SourceBinding(two, [DEPLOY])], 60)
    servicer = RegistryServicer(Registry(catalog, discovery=loop))
    first = await servicer.Discover(registry_pb2.DiscoverRequest(), NO_CONTEXT)
    assert first == registry_pb2.DiscoverResponse(added=3)
    one.ids = ["one/a", "one/c"]
    two.fail = "down"
    second = await servicer.Discover(registry_pb2.DiscoverRequest(), NO_CONTEXT)
    assert second == registry_pb2.DiscoverResponse(added=1, removed=1, errors=["two: down"])
    two.fail = ""
    two.ids = ["two/a", "two/b"]
    named = await servicer.Discover(registry_pb2.DiscoverRequest(provider="two"), NO_CONTEXT)
    assert named == registry_pb2.DiscoverResponse(added=1, updated=1)


async def test_update_performance_takes_zero_and_refuses_a_negative(catalog: Catalog) -> None:
    catalog.register(_entry("ollama/a"), upsert=False)
    servicer = RegistryServicer(Registry(catalog))
    zero = registry_pb2.UpdatePerformanceRequest(id="ollama/a")
    zero.performance.latency_ms_p50 = 0.0
    zero.performance.error_rate = 0.0
    zero.performance.tokens_per_second = 0.5
    stored = await servicer.UpdatePerformance(zero, NO_CONTEXT)
    assert stored.performance.tokens_per_second == 0.5
    bad = registry_pb2.UpdatePerformanceRequest(id="ollama/a")
    bad.performance.latency_ms_p95 = -1.0
    with pytest.raises(InvalidRequest) as caught:
        await servicer.UpdatePerformance(bad, NO_CONTEXT)
    assert str(caught.value) == "performance.latency_ms_p95 must be a finite number >= 0"


async def test_version_listing_carries_the_catalogs_revision(catalog: Catalog) -> None:
    servicer = RegistryServicer(Registry(catalog))
    model = _entry("ollama/a", version="1")
    await servicer.RegisterModelVersion(
        registry_pb2.RegisterModelVersionRequest(model=model, make_current=True), NO_CONTEXT
    )
    await servicer.PinModelVersion(
        registry_pb2.PinModelVersionRequest(id="ollama/a", version="1"), NO_CONTEXT
    )
    newer = _entry("ollama/a", version="2", name="newer")
    await servicer.RegisterModelVersion(
        registry_pb2.RegisterModelVersionRequest(model=newer, make_current=True), NO_CONTEXT
    )
    # make_current moves the pin from version 1 to the new one.
    assert catalog.get("ollama/a").version == "2"
    listing = await servicer.ListModelVersions(
        registry_pb2.ListModelVersionsRequest(id="ollama/a"), NO_CONTEXT
    )
    assert sorted(m.version for m in listing.models) == ["1", "2"]
    assert listing.revision == catalog.revision > 0


def test_providers_are_kept_updated_and_forgotten_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    catalog = Catalog(CatalogStore(path))
    providers = Providers(catalog)
    providers.add(registry_pb2.Provider(name="acme", kind="openai_compat"))
    providers.add(registry_pb2.Provider(name="acme", kind="ollama"))
    providers.add(registry_pb2.Provider(name="other", kind="ollama"))
    for model_id in ("acme/a", "acme/b", "acme/c"):
        catalog.register(_entry(model_id), upsert=False)
    assert providers.remove("other") == 0
    assert providers.remove("acme") == 3
    providers.add(registry_pb2.Provider(name="kept", kind="ollama"))
    catalog.close()
    reopened = Providers(Catalog(CatalogStore(path)))
    assert [(p.name, p.kind, p.enabled) for p in reopened.list()] == [("kept", "ollama", True)]
    again = Providers(Catalog(CatalogStore(tmp_path / "second.sqlite3")))
    again.add(registry_pb2.Provider(name="acme", kind="openai_compat"))
    again.add(registry_pb2.Provider(name="acme", kind="ollama"))
    assert [p.kind for p in again.list()] == ["ollama"]


async def test_health_unregister_and_provider_listing_answer_through_the_servicer(
    catalog: Catalog,
) -> None:
    catalog.register(_entry("ollama/a"), upsert=False)
    servicer = RegistryServicer(Registry(catalog))
    sick = await servicer.UpdateHealth(
        registry_pb2.UpdateHealthRequest(
            id="ollama/a", health=C.HEALTH_STATUS_DEGRADED, reason="slow"
        ),
        NO_CONTEXT,
    )
    assert (sick.health, sick.health_reason) == (C.HEALTH_STATUS_DEGRADED, "slow")
    await servicer.AddProvider(
        registry_pb2.AddProviderRequest(provider=registry_pb2.Provider(name="acme", kind="x")),
        NO_CONTEXT,
    )
    listing = await servicer.ListProviders(registry_pb2.ListProvidersRequest(), NO_CONTEXT)
    assert [p.name for p in listing.providers] == ["acme"]
    gone = await servicer.UnregisterModel(
        registry_pb2.UnregisterModelRequest(id="ollama/a"), NO_CONTEXT
    )
    assert gone.revision == catalog.revision
    assert catalog.list(include_unavailable=True) == []


async def test_run_forever_runs_a_pass_every_interval(catalog: Catalog) -> None:
    source = ListSource("one", "one/a")
    calls = 0

    async def discover() -> SourceSnapshot:
        nonlocal calls
        calls += 1
        return await ListSource.discover(source)

    source.discover = discover  # type: ignore[method-assign]  # counting the passes
    loop = DiscoveryLoop(catalog, [SourceBinding(source, [DEPLOY])], interval_s=0.01)
    started = time.monotonic()
    task = asyncio.create_task(loop.run_forever())
    while calls < 3:  # it goes on: a pass, then another every interval
        assert time.monotonic() - started < 10, f"only {calls} passes in 10 s"
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    elapsed = time.monotonic() - started
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    # ...and waits its interval between them: no more passes than intervals went by.
    assert calls <= elapsed / 0.01 + 2
