"""Discovery snapshots applied to the catalog: merge, change detection, unavailability."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelyard.discovery.source import SourceSnapshot
from modelyard.registry.catalog import Catalog
from modelyard.registry.discovery_loop import DiscoveryLoop, SourceBinding
from modelyard.registry.discovery_sync import apply_snapshot
from modelyard.registry.store import CatalogStore
from modelyard_client.errors import BackendUnavailable, NotFound
from modelyard_client.v1 import common_pb2

DEPLOY = common_pb2.Deployment(backend="ollama", endpoint="127.0.0.1:7001")


def _found(model_id: str, **fields: Any) -> common_pb2.ModelEntry:
    return common_pb2.ModelEntry(id=model_id, provider=model_id.split("/")[0], **fields)


class ListSource:
    """A discovery source that returns what the test sets (a double of our own interface)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.entries: list[common_pb2.ModelEntry] = []
        self.fail: str = ""
        self.complete = True

    async def discover(self) -> SourceSnapshot:
        if self.fail:
            raise BackendUnavailable(self.fail)
        return SourceSnapshot(self.name, tuple(self.entries), complete=self.complete)


def test_merge_keeps_announced_deployments_and_limits(tmp_path: Path) -> None:
    catalog = Catalog(CatalogStore(tmp_path / "r.sqlite3"))
    announced = _found("ollama/a", limits=common_pb2.RateLimits(requests_per_minute=10))
    announced.deployments.add(backend="ollama", endpoint="127.0.0.1:9000")
    catalog.register(announced, upsert=False)
    result = apply_snapshot(
        catalog, SourceSnapshot("ollama", (_found("ollama/a", context_window=8192),)), [DEPLOY]
    )
    assert (result.added, result.updated) == (0, 1)
    entry = catalog.get("ollama/a")
    assert entry.context_window == 8192
    assert [d.endpoint for d in entry.deployments] == ["127.0.0.1:9000"]
    assert entry.limits.requests_per_minute == 10
    assert entry.metadata["source"] == "ollama"
    # The same snapshot again changes nothing.
    revision = catalog.revision
    again = apply_snapshot(
        catalog, SourceSnapshot("ollama", (_found("ollama/a", context_window=8192),))
    )
    assert (again.added, again.updated, again.removed) == (0, 0, 0)
    assert catalog.revision == revision


def test_bad_discovered_entry_is_reported_and_others_stored(tmp_path: Path) -> None:
    catalog = Catalog(CatalogStore(tmp_path / "r.sqlite3"))
    snapshot = SourceSnapshot(
        "gguf:/m",
        (_found("local/ok"), _found("local/bad", input_schema_json="{oops")),
        errors=("broken.gguf: not a GGUF file",),
    )
    result = apply_snapshot(catalog, snapshot, [DEPLOY])
    assert result.added == 1
    assert any("broken.gguf" in e for e in result.errors)
    assert any("input_schema_json" in e for e in result.errors)
    assert [e.id for e in catalog.list()] == ["local/ok"]


async def test_loop_marks_missing_unavailable_and_keeps_catalog_when_source_fails(
    tmp_path: Path,
) -> None:
    catalog = Catalog(CatalogStore(tmp_path / "r.sqlite3"))
    source = ListSource("ollama")
    loop = DiscoveryLoop(catalog, [SourceBinding(source, [DEPLOY])], interval_s=60)
    source.entries = [_found("ollama/a"), _found("ollama/b")]
    assert (await loop.run_once()).added == 2

    source.entries = [_found("ollama/a")]
    source.complete = False  # stopped answering mid-way: nothing is concluded
    await loop.run_once()
    assert catalog.get("ollama/b").health == common_pb2.HEALTH_STATUS_HEALTHY

    source.complete = True
    result = await loop.run_once()
    assert result.removed == 1
    gone = catalog.get("ollama/b")
    assert gone.health == common_pb2.HEALTH_STATUS_UNAVAILABLE
    assert gone.health_reason == "no longer found by ollama"

    source.fail = "ollama at http://127.0.0.1:11434 is unreachable: connection refused"
    result = await loop.run_once()
    assert result.errors == [f"ollama: {source.fail}"]
    still = catalog.get("ollama/a")
    assert still.health == common_pb2.HEALTH_STATUS_UNHEALTHY
    assert still.health_reason == source.fail

    source.fail = ""
    source.entries = [_found("ollama/a"), _found("ollama/b")]
    await loop.run_once()
    assert {e.id for e in catalog.list()} == {"ollama/a", "ollama/b"}  # back, healthy

    with pytest.raises(NotFound, match="discovery source 'nope' is not configured"):
        await loop.run_once("nope")
