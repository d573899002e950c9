"""Catalog, store, versions and servicer behaviours mutation testing found unchecked.

See docs/testing.md ("The surviving mutants"). In process over a real SQLite
catalog: revisions as stored on disk and read back after a restart, a write
that fails part way, another writer on the same file, what a watch leaves
subscribed, and every message compared whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
from conftest import StorePlace

from modelyard.discovery.source import SourceSnapshot
from modelyard.registry import catalog as catalog_module
from modelyard.registry.catalog import Catalog, with_defaults
from modelyard.registry.discovery_loop import DiscoveryLoop, SourceBinding
from modelyard.registry.discovery_sync import apply_snapshot
from modelyard.registry.servicer import Ctx, Registry, RegistryServicer
from modelyard.registry.store import CatalogStore
from modelyard.registry.versions import ModelVersions
from modelyard.storage import DatabaseUrl
from modelyard_client.errors import InvalidRequest, ModelNotFound
from modelyard_client.v1 import common_pb2, registry_pb2

C = common_pb2
Change = registry_pb2.ModelChange
NO_CONTEXT = cast(Ctx, None)
Where = Path | DatabaseUrl  # the catalog's SQLite file or PostgreSQL database


def _entry(model_id: str, endpoint: str = "127.0.0.1:7001", **fields: Any) -> C.ModelEntry:
    entry = C.ModelEntry(id=model_id, provider=model_id.split("/")[0], **fields)
    entry.deployments.add(backend="local", endpoint=endpoint)
    return entry


def _open(where: Where) -> Catalog:
    return Catalog(CatalogStore(where))


@pytest.fixture
def where(store_place: StorePlace) -> Path | DatabaseUrl:
    """The catalog's SQLite file or PostgreSQL database: each test runs on both."""
    return store_place("r.sqlite3")


async def _take(stream: AsyncIterator[Change], n: int) -> list[Change]:
    return [await asyncio.wait_for(anext(stream), 5) for _ in range(n)]


# ---- catalog reads ------------------------------------------------------------


def test_an_unknown_model_is_not_in_the_registry(where: Where) -> None:
    with pytest.raises(ModelNotFound) as caught:
        _open(where).get("local/nope")
    assert str(caught.value) == "model 'local/nope' is not in the registry"
    assert caught.value.model_id == "local/nope"


def test_asking_for_a_capability_no_model_has_finds_nothing(where: Where) -> None:
    catalog = _open(where)
    catalog.register(_entry("local/a", capabilities=[C.CAPABILITY_CHAT]), upsert=False)
    assert catalog.list(capabilities=[C.CAPABILITY_VISION]) == []
    assert [e.id for e in catalog.list(capabilities=[C.CAPABILITY_CHAT])] == ["local/a"]


def test_an_id_without_a_slash_is_named_by_the_whole_id() -> None:
    # `with_defaults` runs before any check in discovery (`discovery_sync._merge`).
    assert with_defaults(C.ModelEntry(id="plain")).name == "plain"
    assert with_defaults(C.ModelEntry(id="openrouter/meta/x")).name == "meta/x"


def test_an_entry_changed_by_a_caller_after_it_was_handed_out_can_still_be_replaced(
    where: Where,
) -> None:
    # The catalog hands out the entry object it holds: a capability added to it
    # afterwards was never indexed, and replacing the entry must still work.
    catalog = _open(where)
    catalog.register(_entry("local/a", capabilities=[C.CAPABILITY_CHAT]), upsert=False)
    catalog.get("local/a").capabilities.append(C.CAPABILITY_VISION)
    replaced = catalog.register(
        _entry("local/a", capabilities=[C.CAPABILITY_CHAT], context_window=8), upsert=True
    )
    assert list(replaced.capabilities) == [C.CAPABILITY_CHAT]
    assert [e.id for e in catalog.list(capabilities=[C.CAPABILITY_CHAT])] == ["local/a"]
    assert catalog.list(capabilities=[C.CAPABILITY_VISION]) == []


# ---- catalog writes -----------------------------------------------------------


def test_an_upsert_replaces_the_deployments_unless_asked_to_merge(
    where: Where,
) -> None:
    catalog = _open(where)
    catalog.register(_entry("local/a", endpoint="127.0.0.1:7001"), upsert=False)
    replaced = catalog.register(_entry("local/a", endpoint="127.0.0.1:7002"), upsert=True)
    assert [d.endpoint for d in replaced.deployments] == ["127.0.0.1:7002"]
    merged = catalog.register(
        _entry("local/a", endpoint="127.0.0.1:7003"), upsert=True, merge_deployments=True
    )
    assert [d.endpoint for d in merged.deployments] == ["127.0.0.1:7002", "127.0.0.1:7003"]


async def test_a_removal_names_the_model_and_its_provider_live_and_in_the_log(
    where: Where,
) -> None:
    catalog = _open(where)
    catalog.register(_entry("local/a"), upsert=False)
    watch = catalog.watch(1)
    assert [c.kind for c in await _take(watch, 1)] == [Change.KIND_SYNCED]
    revision = catalog.unregister("local/a")
    (live,) = await _take(watch, 1)
    await watch.aclose()
    logged = catalog.store.changes_after(1)
    for change in (live, *logged):
        assert (change.kind, change.revision) == (Change.KIND_REMOVED, revision)
        assert (change.model.id, change.model.provider) == ("local/a", "local")


def test_revisions_stored_with_each_entry_survive_a_restart(where: Where) -> None:
    catalog = _open(where)
    for name in ("a", "b", "c"):
        catalog.register(_entry(f"local/{name}"), upsert=False)
    catalog.close()
    reopened = _open(where)
    assert [reopened.get(f"local/{n}").revision for n in ("a", "b", "c")] == [1, 2, 3]
    logged = reopened.store.changes_after(0)
    assert [(c.revision, c.model.revision) for c in logged] == [(1, 1), (2, 2), (3, 3)]
    assert reopened.register(_entry("local/d"), upsert=False).revision == 4


def test_an_empty_change_log_has_no_oldest_revision(where: Where) -> None:
    store = CatalogStore(where)
    assert (store.revision(), store.oldest_revision()) == (0, 0)


class _OvertakenStore(CatalogStore):
    """A store whose file another registry writes to right after a revision is predicted."""

    other: Catalog | None = None

    def next_revision(self) -> int:
        predicted = super().next_revision()
        if self.other is not None:
            other, self.other = self.other, None
            other.register(_entry("local/theirs"), upsert=False)
        return predicted


async def test_an_entry_overtaken_by_another_writer_carries_the_revision_it_was_given(
    where: Where,
) -> None:
    store = _OvertakenStore(where)
    mine = Catalog(store)
    watch = mine.watch(0)
    assert [c.kind for c in await _take(watch, 1)] == [Change.KIND_SYNCED]
    store.other = _open(where)
    stored = mine.register(_entry("local/mine"), upsert=False)
    assert stored.revision == 2  # 1 went to the other writer
    assert mine.get("local/mine").revision == 2
    (live,) = await _take(watch, 1)
    assert (live.revision, live.model.revision) == (2, 2)
    await watch.aclose()


def test_a_write_that_fails_part_way_leaves_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"  # PostgreSQL's case: tests/storage/test_postgres_stores.py
    catalog = _open(path)
    # Another connection to the file: the change is logged, then storing the model fails.
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON models WHEN NEW.id = 'local/bad' "
            "BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    with pytest.raises(sqlite3.IntegrityError) as caught:
        catalog.register(_entry("local/bad", version="1"), upsert=False)
    assert str(caught.value) == "refused"
    assert (catalog.revision, catalog.store.changes_after(0)) == (0, [])
    assert catalog.store.versions("local/bad") == []
    assert catalog.register(_entry("local/good"), upsert=False).revision == 1


def test_negative_zero_is_a_cost_of_zero(where: Where) -> None:
    catalog = _open(where)
    stored = catalog.register(
        _entry("local/a", cost=C.CostProfile(usd_per_request=-0.0)), upsert=False
    )
    assert stored.cost.usd_per_request == 0.0
    with pytest.raises(InvalidRequest) as caught:
        catalog.register(
            _entry("local/b", cost=C.CostProfile(usd_per_request=-1e-300)), upsert=False
        )
    assert str(caught.value) == (
        "model 'local/b': cost.usd_per_request must be a finite number >= 0, got -1e-300"
    )


# ---- watching -----------------------------------------------------------------


async def test_a_snapshot_carries_each_entrys_revision(where: Where) -> None:
    catalog = _open(where)
    catalog.register(_entry("local/b"), upsert=False)
    catalog.register(_entry("local/a"), upsert=False)
    watch = catalog.watch(0)
    changes = await _take(watch, 3)
    await watch.aclose()
    assert [(c.kind, c.model.id, c.revision) for c in changes] == [
        (Change.KIND_UPSERTED, "local/a", 2),
        (Change.KIND_UPSERTED, "local/b", 1),
        (Change.KIND_SYNCED, "", 2),
    ]


async def test_an_ended_watch_leaves_nothing_subscribed(where: Where) -> None:
    catalog = _open(where)
    watch = catalog.watch(0)
    await _take(watch, 1)
    assert len(catalog._watchers) == 1
    await watch.aclose()
    # Else every later change would be queued for a reader that is gone.
    assert len(catalog._watchers) == 0


async def test_a_watcher_cut_off_is_unsubscribed_at_once(
    where: Where, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catalog_module, "WATCH_QUEUE_LIMIT", 2)
    catalog = _open(where)
    slow = catalog.watch(0)
    await _take(slow, 1)
    for name in ("a", "b", "c"):  # one more than the queue holds: cut off
        catalog.register(_entry(f"local/{name}"), upsert=False)
    # Before it reads again: later changes are not queued (nor markers piled up) for it.
    assert len(catalog._watchers) == 0
    await slow.aclose()


# ---- versions -----------------------------------------------------------------


def test_an_older_version_registered_again_waits_behind_the_moved_pin(
    where: Where,
) -> None:
    catalog = _open(where)
    versions = ModelVersions(catalog)
    versions.register(_entry("local/a", version="1"), make_current=False)
    versions.pin("local/a", "1")
    versions.register(_entry("local/a", version="2"), make_current=True)
    assert catalog.store.pins() == {"local/a": "2"}
    # Version 1 again, changed: the pin is on 2 now, so it is kept, not served.
    again = versions.register(_entry("local/a", version="1", name="again"), make_current=False)
    assert again.name == "again"
    assert (catalog.get("local/a").version, catalog.get("local/a").name) == ("2", "a")
    assert [(e.version, e.name) for e in versions.list("local/a")] == [("1", "again"), ("2", "a")]


def test_unpinning_a_model_that_was_never_pinned_serves_its_latest(
    where: Where,
) -> None:
    catalog = _open(where)
    versions = ModelVersions(catalog)
    versions.register(_entry("local/a", version="1"), make_current=False)
    versions.register(_entry("local/a", version="2"), make_current=False)
    assert versions.pin("local/a", "").version == "2"
    assert catalog.store.pins() == {}


def test_a_model_registered_without_a_version_has_no_versions(where: Where) -> None:
    catalog = _open(where)
    catalog.register(_entry("local/a"), upsert=False)
    assert ModelVersions(catalog).list("local/a") == []


# ---- the servicer and discovery ------------------------------------------------


async def test_update_performance_takes_negative_zero_as_zero(where: Where) -> None:
    catalog = _open(where)
    catalog.register(_entry("local/a"), upsert=False)
    request = registry_pb2.UpdatePerformanceRequest(id="local/a")
    request.performance.latency_ms_p50 = -0.0
    request.performance.tokens_per_second = 3.0
    stored = await RegistryServicer(Registry(catalog)).UpdatePerformance(request, NO_CONTEXT)
    assert (stored.performance.latency_ms_p50, stored.performance.tokens_per_second) == (0.0, 3.0)


class _CountingSource:
    def __init__(self, name: str, *ids: str) -> None:
        self.name = name
        self.ids = ids
        self.passes = 0

    async def discover(self) -> SourceSnapshot:
        self.passes += 1
        entries = tuple(C.ModelEntry(id=i, provider=self.name) for i in self.ids)
        return SourceSnapshot(self.name, entries)


async def test_discover_naming_a_provider_runs_only_its_source(where: Where) -> None:
    catalog = _open(where)
    one, two = _CountingSource("one", "one/a"), _CountingSource("two", "two/a")
    deploy = C.Deployment(backend="local", endpoint="127.0.0.1:7001")
    loop = DiscoveryLoop(catalog, [SourceBinding(one, [deploy]), SourceBinding(two, [deploy])], 60)
    servicer = RegistryServicer(Registry(catalog, discovery=loop))
    named = await servicer.Discover(registry_pb2.DiscoverRequest(provider="two"), NO_CONTEXT)
    assert named == registry_pb2.DiscoverResponse(added=1)
    assert (one.passes, two.passes) == (0, 1)
    assert [e.id for e in catalog.list()] == ["two/a"]


def test_every_model_a_source_no_longer_finds_is_counted_as_removed(
    where: Where,
) -> None:
    catalog = _open(where)
    deploy = [C.Deployment(backend="local", endpoint="127.0.0.1:7001")]
    found = tuple(C.ModelEntry(id=f"src/{n}", provider="src") for n in ("a", "b", "c"))
    apply_snapshot(catalog, SourceSnapshot("src", found), deploy)
    result = apply_snapshot(catalog, SourceSnapshot("src", found[2:]), deploy)
    assert (result.added, result.updated, result.removed) == (0, 0, 2)
    gone = catalog.list(include_unavailable=True)
    assert [(e.id, e.health) for e in gone] == [
        ("src/a", C.HEALTH_STATUS_UNAVAILABLE),
        ("src/b", C.HEALTH_STATUS_UNAVAILABLE),
        ("src/c", C.HEALTH_STATUS_HEALTHY),
    ]
