"""One rule for a stored entry's defaults, whether it was registered or discovered."""

from __future__ import annotations

from pathlib import Path

from modelyard.discovery.source import SourceSnapshot
from modelyard.registry.catalog import Catalog, with_defaults
from modelyard.registry.discovery_sync import apply_snapshot
from modelyard.registry.store import CatalogStore
from modelyard_client.v1 import common_pb2

C = common_pb2


def test_an_entry_without_name_or_health_gets_both() -> None:
    given = C.ModelEntry(id="ollama/llama3:8b/q4", provider="ollama", health_reason="stale")
    stored = with_defaults(given)
    assert (stored.name, stored.health, stored.health_reason) == (
        "llama3:8b/q4",
        C.HEALTH_STATUS_HEALTHY,
        "",
    )
    assert given.name == ""  # a copy: the caller's entry is left alone


def test_what_the_entry_says_is_kept() -> None:
    given = C.ModelEntry(
        id="p/m", provider="p", name="M", health=C.HEALTH_STATUS_DEGRADED, health_reason="slow"
    )
    assert with_defaults(given) == given


def test_registered_and_discovered_entries_get_the_same_defaults(tmp_path: Path) -> None:
    found = C.ModelEntry(id="p/m", provider="p", health_reason="stale")
    registered = Catalog(CatalogStore(tmp_path / "a.sqlite3"))
    discovered = Catalog(CatalogStore(tmp_path / "b.sqlite3"))
    try:
        registered.register(found, upsert=False)
        apply_snapshot(discovered, SourceSnapshot("src", (found,)))
        one, other = registered.get("p/m"), discovered.get("p/m")
        assert (one.name, one.health, one.health_reason) == ("m", C.HEALTH_STATUS_HEALTHY, "")
        assert (other.name, other.health, other.health_reason) == (one.name, one.health, "")
    finally:
        registered.close()
        discovered.close()
