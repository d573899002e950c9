"""Discovery behaviours that mutation testing found unchecked (docs/testing.md).

The counts a pass reports, which sources it runs, what a failing source marks,
and what a re-discovered model keeps: each asserted exactly.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from modelyard.discovery.source import SourceSnapshot
from modelyard.registry.catalog import Catalog
from modelyard.registry.discovery_loop import DiscoveryLoop, SourceBinding
from modelyard.registry.discovery_sync import (
    SyncResult,
    apply_snapshot,
    mark_source_unreachable,
)
from modelyard.registry.store import CatalogStore
from modelyard_client.errors import BackendUnavailable, NotFound
from modelyard_client.v1 import common_pb2

C = common_pb2
DEPLOY = C.Deployment(backend="ollama", endpoint="127.0.0.1:7001")


def _found(model_id: str, **fields: Any) -> C.ModelEntry:
    return C.ModelEntry(id=model_id, provider=model_id.split("/")[0], **fields)


class ListSource:
    """A discovery source that returns what the test sets."""

    def __init__(self, name: str, *ids: str) -> None:
        self.name = name
        self.entries = [_found(i) for i in ids]
        self.fail = ""
        self.calls = 0

    async def discover(self) -> SourceSnapshot:
        self.calls += 1
        if self.fail:
            raise BackendUnavailable(self.fail)
        return SourceSnapshot(self.name, tuple(self.entries))


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return Catalog(CatalogStore(tmp_path / "r.sqlite3"))


def test_sync_results_add_up() -> None:
    total = SyncResult(added=1, updated=2, removed=3, errors=["a"])
    total.merge(SyncResult(added=10, updated=20, removed=30, errors=["b"]))
    total.merge(SyncResult(added=100, updated=200, removed=300))
    assert total == SyncResult(added=111, updated=222, removed=333, errors=["a", "b"])


def test_counts_are_per_model_over_several_of_each(catalog: Catalog) -> None:
    first = apply_snapshot(catalog, SourceSnapshot("ollama", (_found("ollama/a"),)), [DEPLOY])
    assert (first.added, first.updated, first.removed) == (1, 0, 0)
    snapshot = SourceSnapshot(
        "ollama", (_found("ollama/a", name="1"), _found("ollama/b"), _found("ollama/c"))
    )
    apply_snapshot(catalog, snapshot, [DEPLOY])
    changed = SourceSnapshot(
        "ollama", (_found("ollama/a", name="10"), _found("ollama/b", name="20"))
    )
    result = apply_snapshot(catalog, changed, [DEPLOY])
    assert (result.added, result.updated, result.removed) == (0, 2, 1)
    assert catalog.get("ollama/c").health == C.HEALTH_STATUS_UNAVAILABLE


def test_a_refused_entry_is_skipped_and_the_rest_still_apply(catalog: Catalog) -> None:
    bad = _found("ollama/bad", context_window=1)
    bad.performance.error_rate = 2.0  # not a share: check_entry refuses it
    snapshot = SourceSnapshot("ollama", (bad, _found("ollama/b"), _found("ollama/c")))
    result = apply_snapshot(catalog, snapshot, [DEPLOY])
    assert result.added == 2
    assert [e.id for e in catalog.list()] == ["ollama/b", "ollama/c"]
    (error,) = result.errors
    assert error.startswith("ollama: ")


def test_rediscovery_keeps_stored_performance_and_limits_but_not_over_new_ones(
    catalog: Catalog,
) -> None:
    stored = _found("ollama/a", limits=C.RateLimits(requests_per_minute=10))
    stored.performance.latency_ms_p50 = 120.0
    stored.deployments.append(DEPLOY)
    catalog.register(stored, upsert=False)
    apply_snapshot(catalog, SourceSnapshot("ollama", (_found("ollama/a"),)))
    entry = catalog.get("ollama/a")
    assert entry.performance.latency_ms_p50 == 120.0
    assert entry.limits.requests_per_minute == 10
    fresh = _found("ollama/a", limits=C.RateLimits(requests_per_minute=99))
    fresh.performance.latency_ms_p50 = 7.0
    apply_snapshot(catalog, SourceSnapshot("ollama", (fresh,)))
    entry = catalog.get("ollama/a")
    assert (entry.performance.latency_ms_p50, entry.limits.requests_per_minute) == (7.0, 99)


def test_an_unreachable_source_marks_only_its_models_and_counts_them(catalog: Catalog) -> None:
    apply_snapshot(
        catalog, SourceSnapshot("ollama", (_found("ollama/a"), _found("ollama/b"))), [DEPLOY]
    )
    apply_snapshot(catalog, SourceSnapshot("files", (_found("local/x"),)), [DEPLOY])
    assert mark_source_unreachable(catalog, "ollama", "connection refused") == 2
    assert {e.id: e.health for e in catalog.list(include_unavailable=True)} == {
        "local/x": C.HEALTH_STATUS_HEALTHY,
        "ollama/a": C.HEALTH_STATUS_UNHEALTHY,
        "ollama/b": C.HEALTH_STATUS_UNHEALTHY,
    }
    # Marked already with that reason: nothing to change, nothing counted.
    assert mark_source_unreachable(catalog, "ollama", "connection refused") == 0
    assert mark_source_unreachable(catalog, "ollama", "timed out") == 2


async def test_run_once_runs_every_source_or_only_the_one_named(catalog: Catalog) -> None:
    one, two = ListSource("one", "one/a"), ListSource("two", "two/a", "two/b")
    loop = DiscoveryLoop(catalog, [SourceBinding(one, [DEPLOY]), SourceBinding(two, [DEPLOY])], 60)
    everything = await loop.run_once()
    assert (everything.added, one.calls, two.calls) == (3, 1, 1)
    assert catalog.get("two/b").deployments[0].endpoint == DEPLOY.endpoint
    only = await loop.run_once("two")
    assert (only.added, one.calls, two.calls) == (0, 1, 2)


async def test_a_failing_source_is_reported_and_the_next_still_runs(
    catalog: Catalog, caplog: pytest.LogCaptureFixture
) -> None:
    bad, good = ListSource("bad", "bad/a"), ListSource("good", "good/a")
    loop = DiscoveryLoop(catalog, [SourceBinding(bad, [DEPLOY]), SourceBinding(good, [DEPLOY])], 60)
    await loop.run_once()
    bad.fail = "daemon down"
    caplog.set_level(logging.WARNING, logger="modelyard.registry.discovery_loop")
    result = await loop.run_once()
    assert result.errors == ["bad: daemon down"]
    assert good.calls == 2
    assert catalog.get("bad/a").health_reason == "daemon down"
    assert [r.getMessage() for r in caplog.records] == ["discovery: bad: daemon down"]


async def test_an_unknown_source_name_lists_the_configured_ones(catalog: Catalog) -> None:
    loop = DiscoveryLoop(
        catalog, [SourceBinding(ListSource("one")), SourceBinding(ListSource("two"))], 60
    )
    with pytest.raises(NotFound) as caught:
        await loop.run_once("three")
    assert str(caught.value) == "discovery source 'three' is not configured (one, two)"
    with pytest.raises(NotFound) as caught:
        await DiscoveryLoop(catalog, [], 60).run_once("three")
    assert str(caught.value) == "discovery source 'three' is not configured (none configured)"
