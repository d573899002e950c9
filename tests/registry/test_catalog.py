"""The catalog domain: persistence, validation, change log and watching."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from modelyard.errors import AlreadyExists, FailedPrecondition, InvalidRequest, ModelNotFound
from modelyard.registry.catalog import Catalog
from modelyard.registry.store import CatalogStore
from modelyard.v1 import common_pb2, registry_pb2

Change = registry_pb2.ModelChange


def entry(model_id: str, **fields: Any) -> common_pb2.ModelEntry:
    e = common_pb2.ModelEntry(id=model_id, provider=model_id.split("/")[0], **fields)
    e.deployments.add(backend="local", endpoint="127.0.0.1:7000")
    return e


def open_catalog(path: Path) -> Catalog:
    return Catalog(CatalogStore(path / "registry.sqlite3"))


def test_register_get_and_survive_restart(tmp_path: Path) -> None:
    catalog = open_catalog(tmp_path)
    stored = catalog.register(entry("local/a", context_window=2048), upsert=False)
    assert stored.revision == 1 and stored.name == "a"
    assert stored.health == common_pb2.HEALTH_STATUS_HEALTHY
    catalog.register(entry("openai/b"), upsert=False)
    catalog.close()

    reopened = open_catalog(tmp_path)
    assert reopened.get("local/a").context_window == 2048
    assert [e.id for e in reopened.list()] == ["local/a", "openai/b"]
    assert reopened.revision == 2
    assert reopened.register(entry("local/c"), upsert=False).revision == 3


def test_duplicate_needs_upsert_and_keeps_the_original(tmp_path: Path) -> None:
    catalog = open_catalog(tmp_path)
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
    tmp_path: Path, bad: common_pb2.ModelEntry, message: str
) -> None:
    catalog = open_catalog(tmp_path)
    catalog.register(entry("x/y", context_window=7), upsert=False)
    with pytest.raises(InvalidRequest, match=message.replace("(", r"\(").replace(")", r"\)")):
        catalog.register(bad, upsert=True)
    assert catalog.get("x/y").context_window == 7
    assert catalog.revision == 1


def test_bad_endpoint_is_named(tmp_path: Path) -> None:
    catalog = open_catalog(tmp_path)
    bad = common_pb2.ModelEntry(id="x/y", provider="x")
    bad.deployments.add(backend="local", endpoint="nowhere")
    with pytest.raises(InvalidRequest, match=r"deployments\[0\].endpoint 'nowhere'"):
        catalog.register(bad, upsert=False)


def test_unregister_and_unknown(tmp_path: Path) -> None:
    catalog = open_catalog(tmp_path)
    catalog.register(entry("local/a"), upsert=False)
    catalog.unregister("local/a")
    with pytest.raises(ModelNotFound, match="'local/a'"):
        catalog.get("local/a")
    with pytest.raises(ModelNotFound):
        catalog.unregister("local/a")


def test_list_filters(tmp_path: Path) -> None:
    catalog = open_catalog(tmp_path)
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


async def test_watch_snapshot_then_live(tmp_path: Path) -> None:
    catalog = open_catalog(tmp_path)
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


async def test_watch_resumes_across_a_restart_without_missing_changes(tmp_path: Path) -> None:
    catalog = open_catalog(tmp_path)
    catalog.register(entry("local/a"), upsert=False)
    stream = catalog.watch(0)
    seen = await _take(stream, 2)
    last = seen[-1].revision
    await stream.aclose()
    catalog.close()

    # Changes while the watcher was away, in a new registry process.
    restarted = open_catalog(tmp_path)
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


async def test_watch_from_the_future_is_refused(tmp_path: Path) -> None:
    catalog = open_catalog(tmp_path)
    with pytest.raises(FailedPrecondition, match="ahead of the registry"):
        await anext(catalog.watch(99))
