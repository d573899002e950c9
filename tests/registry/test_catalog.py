"""The catalog domain: persistence, validation, change log and watching."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from conftest import StorePlace

from modelyard.catalog_limits import HEALTH_REASON_CHARS
from modelyard.registry import catalog as catalog_module
from modelyard.registry import store
from modelyard.registry.catalog import Catalog
from modelyard.registry.store import CatalogStore
from modelyard_client.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidRequest,
    ModelNotFound,
    WatcherFellBehind,
)
from modelyard_client.v1 import common_pb2, registry_pb2

Change = registry_pb2.ModelChange


def entry(model_id: str, **fields: Any) -> common_pb2.ModelEntry:
    e = common_pb2.ModelEntry(id=model_id, provider=model_id.split("/")[0], **fields)
    e.deployments.add(backend="local", endpoint="127.0.0.1:7000")
    return e


def open_catalog(place: StorePlace, name: str = "registry.sqlite3") -> Catalog:
    """The catalog `name` names, on the engine `store_place` stands for."""
    return Catalog(CatalogStore(place(name)))


def test_register_get_and_survive_restart(store_place: StorePlace) -> None:
    catalog = open_catalog(store_place)
    stored = catalog.register(entry("local/a", context_window=2048), upsert=False)
    assert stored.revision == 1 and stored.name == "a"
    assert stored.health == common_pb2.HEALTH_STATUS_HEALTHY
    catalog.register(entry("openai/b"), upsert=False)
    catalog.close()

    reopened = open_catalog(store_place)
    assert reopened.get("local/a").context_window == 2048
    assert [e.id for e in reopened.list()] == ["local/a", "openai/b"]
    assert reopened.revision == 2
    assert reopened.register(entry("local/c"), upsert=False).revision == 3


def test_duplicate_needs_upsert_and_keeps_the_original(store_place: StorePlace) -> None:
    catalog = open_catalog(store_place)
    catalog.register(entry("local/a", context_window=1), upsert=False)
    with pytest.raises(AlreadyExists, match="'local/a' is already registered"):
        catalog.register(entry("local/a", context_window=2), upsert=False)
    assert catalog.get("local/a").context_window == 1
    assert catalog.register(entry("local/a", context_window=2), upsert=True).context_window == 2


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (entry("bad id!"), "model id 'bad id!' is invalid"),
        (common_pb2.ModelEntry(id="x/y"), "provider must not be empty"),
        (entry("x/y", input_schema_json="{not json"), "input_schema_json is not valid JSON"),
        (entry("x/y", output_schema_json="[1]"), "output_schema_json must be a JSON object"),
        (
            entry("x/y", cost=common_pb2.CostProfile(usd_per_input_token=-1)),
            "cost.usd_per_input_token",
        ),
        (entry("x/y", performance=common_pb2.PerformanceProfile(error_rate=2)), "error_rate"),
        (
            entry("x/y", limits=common_pb2.RateLimits(requests_per_minute=float("nan"))),
            "limits.requests_per_minute",
        ),
    ],
)
def test_bad_entries_are_refused_and_nothing_stored_is_lost(
    store_place: StorePlace, bad: common_pb2.ModelEntry, message: str
) -> None:
    catalog = open_catalog(store_place)
    catalog.register(entry("x/y", context_window=7), upsert=False)
    with pytest.raises(InvalidRequest, match=message.replace("(", r"\(").replace(")", r"\)")):
        catalog.register(bad, upsert=True)
    assert catalog.get("x/y").context_window == 7
    assert catalog.revision == 1


def test_bad_endpoint_is_named(store_place: StorePlace) -> None:
    catalog = open_catalog(store_place)
    bad = common_pb2.ModelEntry(id="x/y", provider="x")
    bad.deployments.add(backend="local", endpoint="nowhere")
    with pytest.raises(InvalidRequest, match=r"deployments\[0\].endpoint 'nowhere'"):
        catalog.register(bad, upsert=False)


def test_unregister_and_unknown(store_place: StorePlace) -> None:
    catalog = open_catalog(store_place)
    catalog.register(entry("local/a"), upsert=False)
    catalog.unregister("local/a")
    with pytest.raises(ModelNotFound, match="'local/a'"):
        catalog.get("local/a")
    with pytest.raises(ModelNotFound):
        catalog.unregister("local/a")


def test_list_filters(store_place: StorePlace) -> None:
    catalog = open_catalog(store_place)
    catalog.register(entry("local/a", capabilities=[common_pb2.CAPABILITY_CHAT]), upsert=False)
    catalog.register(
        entry("openai/b", capabilities=[common_pb2.CAPABILITY_CHAT, common_pb2.CAPABILITY_VISION]),
        upsert=False,
    )
    catalog.update_health("openai/b", common_pb2.HEALTH_STATUS_UNAVAILABLE, "provider removed")
    assert [e.id for e in catalog.list(provider="local")] == ["local/a"]
    assert [e.id for e in catalog.list(capabilities=[common_pb2.CAPABILITY_VISION])] == []
    visible = catalog.list(capabilities=[common_pb2.CAPABILITY_VISION], include_unavailable=True)
    assert [(e.id, e.health_reason) for e in visible] == [("openai/b", "provider removed")]


async def _take(stream: AsyncIterator[Change], n: int) -> list[Change]:
    return [await asyncio.wait_for(anext(stream), 2) for _ in range(n)]


async def test_watch_snapshot_then_live(store_place: StorePlace) -> None:
    catalog = open_catalog(store_place)
    catalog.register(entry("local/a"), upsert=False)
    stream = catalog.watch(0)
    snapshot = await _take(stream, 2)
    assert [(c.kind, c.model.id) for c in snapshot] == [
        (Change.KIND_UPSERTED, "local/a"),
        (Change.KIND_SYNCED, ""),
    ]
    assert snapshot[1].revision == 1
    catalog.register(entry("local/b"), upsert=False)
    catalog.unregister("local/a")
    live = await _take(stream, 2)
    assert [(c.kind, c.model.id, c.revision) for c in live] == [
        (Change.KIND_UPSERTED, "local/b", 2),
        (Change.KIND_REMOVED, "local/a", 3),
    ]
    await stream.aclose()


async def test_watch_resumes_across_a_restart_without_missing_changes(
    store_place: StorePlace,
) -> None:
    catalog = open_catalog(store_place)
    catalog.register(entry("local/a"), upsert=False)
    stream = catalog.watch(0)
    seen = await _take(stream, 2)
    last = seen[-1].revision
    await stream.aclose()
    catalog.close()

    # Changes while the watcher was away, in a new registry process.
    restarted = open_catalog(store_place)
    restarted.register(entry("local/b"), upsert=False)
    restarted.unregister("local/a")
    resumed = restarted.watch(last)
    changes = await _take(resumed, 3)
    assert [(c.kind, c.model.id) for c in changes] == [
        (Change.KIND_UPSERTED, "local/b"),
        (Change.KIND_REMOVED, "local/a"),
        (Change.KIND_SYNCED, ""),
    ]
    await resumed.aclose()


async def test_watch_from_the_future_is_refused(store_place: StorePlace) -> None:
    catalog = open_catalog(store_place)
    with pytest.raises(FailedPrecondition, match="ahead of the registry"):
        await anext(catalog.watch(99))


def _commits(catalog: Catalog, count: int) -> None:
    for i in range(count):
        catalog.register(entry(f"local/m{i}"), upsert=False)


def test_the_change_log_keeps_the_latest_change_log_limit_changes(
    store_place: StorePlace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "CHANGE_LOG_LIMIT", 3)
    catalog = open_catalog(store_place)
    _commits(catalog, 5)
    assert [c.revision for c in catalog.store.changes_after(0)] == [3, 4, 5]
    assert (catalog.store.oldest_revision(), catalog.revision) == (3, 5)


async def test_a_watcher_resuming_just_before_the_oldest_kept_change_misses_nothing(
    store_place: StorePlace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "CHANGE_LOG_LIMIT", 3)
    catalog = open_catalog(store_place)
    _commits(catalog, 5)
    resumed = catalog.watch(2)  # change 2 is pruned, but 3 onwards is all it needs
    changes = await _take(resumed, 4)
    assert [(c.kind, c.revision) for c in changes] == [
        (Change.KIND_UPSERTED, 3),
        (Change.KIND_UPSERTED, 4),
        (Change.KIND_UPSERTED, 5),
        (Change.KIND_SYNCED, 5),
    ]
    await resumed.aclose()


async def test_a_watcher_older_than_the_change_log_is_told_to_resync(
    store_place: StorePlace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "CHANGE_LOG_LIMIT", 3)
    catalog = open_catalog(store_place)
    _commits(catalog, 5)
    with pytest.raises(WatcherFellBehind) as refused:
        await anext(catalog.watch(1))  # change 2 is gone: resuming would skip it
    assert refused.value.message == (
        "after_revision 1 is older than the change log (oldest 3); resume with after_revision=0"
    )
    assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION


async def _until_cut_off(stream: AsyncIterator[Change]) -> tuple[list[int], str]:
    """The revisions a watch delivers before it is cut off, and its error's message."""
    delivered = []
    with pytest.raises(WatcherFellBehind) as cut_off:
        while True:
            delivered.append((await asyncio.wait_for(anext(stream), 2)).revision)
    return delivered, cut_off.value.message


async def test_a_watcher_whose_queue_overflows_gets_what_it_holds_then_where_to_resume(
    store_place: StorePlace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catalog_module, "WATCH_QUEUE_LIMIT", 3)
    catalog = open_catalog(store_place)
    catalog.register(entry("local/a"), upsert=False)
    slow = catalog.watch(0)
    assert [c.kind for c in await _take(slow, 2)] == [Change.KIND_UPSERTED, Change.KIND_SYNCED]
    _commits(catalog, 4)  # revisions 2-5 while the watcher reads nothing: one too many
    delivered, message = await _until_cut_off(slow)
    assert delivered == [2, 3, 4]  # the queued changes, none dropped: no gap before the cut
    assert message == "watcher fell more than 3 changes behind; resume with after_revision=4"
    resumed = catalog.watch(4)
    assert [(c.kind, c.revision) for c in await _take(resumed, 2)] == [
        (Change.KIND_UPSERTED, 5),
        (Change.KIND_SYNCED, 5),
    ]
    await resumed.aclose()


async def test_a_watch_ended_by_a_stopping_registry_delivers_its_full_queue_first(
    store_place: StorePlace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catalog_module, "WATCH_QUEUE_LIMIT", 3)
    catalog = open_catalog(store_place)
    slow = catalog.watch(0)
    assert (await _take(slow, 1))[0].kind == Change.KIND_SYNCED
    _commits(catalog, 3)  # revisions 1-3 fill the watcher's queue
    catalog.end_watches()
    # All of it, then the stream ends: the watcher resumes from 3 and misses nothing.
    assert [change.revision async for change in slow] == [1, 2, 3]


async def test_a_resume_point_counts_only_in_the_catalog_it_came_from(
    store_place: StorePlace,
) -> None:
    old = open_catalog(store_place, "old/registry.sqlite3")
    _commits(old, 2)
    first = old.watch(0)
    synced = (await _take(first, 3))[-1]
    assert (synced.kind, synced.revision, synced.catalog_id) == (
        Change.KIND_SYNCED,
        2,
        old.catalog_id,
    )
    await first.aclose()
    old.close()
    reopened = open_catalog(store_place, "old/registry.sqlite3")  # the same file: the same catalog
    assert reopened.catalog_id == synced.catalog_id
    resumed = reopened.watch(2, synced.catalog_id)
    assert [(c.kind, c.revision) for c in await _take(resumed, 1)] == [(Change.KIND_SYNCED, 2)]
    await resumed.aclose()

    new = open_catalog(
        store_place, "new/registry.sqlite3"
    )  # started over: revision 2 there is another change
    _commits(new, 2)
    with pytest.raises(FailedPrecondition) as refused:
        await anext(new.watch(2, synced.catalog_id))
    assert refused.value.message == (
        f"after_revision 2 counts in catalog {synced.catalog_id}, not in this registry's "
        f"catalog {new.catalog_id} (it started over); resume with after_revision=0"
    )


def test_a_health_reason_of_exactly_the_limit_is_kept_whole_and_one_more_is_cut(
    store_place: StorePlace,
) -> None:
    catalog = open_catalog(store_place)
    catalog.register(entry("openai/a"), upsert=False)
    exact = "r" * HEALTH_REASON_CHARS
    kept = catalog.update_health("openai/a", common_pb2.HEALTH_STATUS_DEGRADED, exact)
    assert kept.health_reason == exact
    cut = catalog.update_health("openai/a", common_pb2.HEALTH_STATUS_DEGRADED, exact + "s")
    assert cut.health_reason == "r" * (HEALTH_REASON_CHARS - 1) + "…"


def test_an_unknown_health_value_is_refused_naming_the_model(store_place: StorePlace) -> None:
    catalog = open_catalog(store_place)
    catalog.register(entry("openai/a"), upsert=False)
    with pytest.raises(InvalidRequest) as info:
        catalog.update_health("openai/a", 99, "?")  # type: ignore[arg-type]
    assert info.value.message.startswith("model 'openai/a': "), info.value.message
    assert catalog.get("openai/a").health == common_pb2.HEALTH_STATUS_HEALTHY
