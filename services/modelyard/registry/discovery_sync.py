"""Applying what a discovery source found to the catalog.

Discovered entries are merged into what is stored (deployments that backends
announced, limits set by operators are kept), a write that changes nothing is
skipped, and models a source no longer finds become unavailable with the
reason, never deleted. A source that failed part way changes no availability.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from modelyard.discovery.source import SourceSnapshot
from modelyard.registry.catalog import Catalog, bounded_reason, with_defaults
from modelyard.registry.validation import check_entry
from modelyard_client.errors import ModelyardError
from modelyard_client.v1 import common_pb2

SOURCE_KEY = "source"


@dataclass
class SyncResult:
    added: int = 0
    updated: int = 0
    removed: int = 0  # made unavailable
    errors: list[str] = field(default_factory=list)

    def merge(self, other: SyncResult) -> None:
        self.added += other.added
        self.updated += other.updated
        self.removed += other.removed
        self.errors.extend(other.errors)


def apply_snapshot(
    catalog: Catalog,
    snapshot: SourceSnapshot,
    deployments: Sequence[common_pb2.Deployment] = (),
) -> SyncResult:
    result = SyncResult(errors=[f"{snapshot.source}: {e}" for e in snapshot.errors])
    seen: set[str] = set()
    for found in snapshot.entries:
        seen.add(found.id)
        existing = _current(catalog, found.id)
        merged = _merge(found, existing, snapshot.source, deployments)
        try:
            check_entry(merged)
        except ModelyardError as exc:
            result.errors.append(f"{snapshot.source}: {exc.message}")
            continue
        stored = catalog.put(merged)
        if existing is None:
            result.added += 1
        elif stored.revision != existing.revision:
            result.updated += 1
    if not snapshot.complete:
        return result
    gone = f"no longer found by {snapshot.source}"
    for entry in catalog.list():  # available ones only
        if entry.metadata.get(SOURCE_KEY) == snapshot.source and entry.id not in seen:
            catalog.update_health(entry.id, common_pb2.HEALTH_STATUS_UNAVAILABLE, gone)
            result.removed += 1
    return result


def mark_source_unreachable(catalog: Catalog, source: str, reason: str) -> int:
    """The source as a whole failed: its models are unhealthy, with the cause, but kept."""
    count = 0
    reason = bounded_reason(reason)  # as stored, or every pass would write it again
    for entry in catalog.list():
        if entry.metadata.get(SOURCE_KEY) == source and entry.health_reason != reason:
            catalog.update_health(entry.id, common_pb2.HEALTH_STATUS_UNHEALTHY, reason)
            count += 1
    return count


def _current(catalog: Catalog, model_id: str) -> common_pb2.ModelEntry | None:
    try:
        return catalog.get(model_id)
    except ModelyardError:
        return None


def _merge(
    found: common_pb2.ModelEntry,
    existing: common_pb2.ModelEntry | None,
    source: str,
    deployments: Sequence[common_pb2.Deployment],
) -> common_pb2.ModelEntry:
    merged = with_defaults(found)
    merged.metadata[SOURCE_KEY] = source
    if not merged.deployments:
        merged.deployments.extend(existing.deployments if existing else deployments)
    if existing is not None:
        if existing.context_window and existing.deployments:
            # What the serving backend announced wins over the file's trained maximum.
            merged.context_window = min(
                c for c in (merged.context_window, existing.context_window) if c
            )
        if not merged.HasField("limits") and existing.HasField("limits"):
            merged.limits.CopyFrom(existing.limits)
        if not merged.HasField("performance") and existing.HasField("performance"):
            merged.performance.CopyFrom(existing.performance)
        if not merged.HasField("quality") and existing.HasField("quality"):
            merged.quality.CopyFrom(existing.quality)
    return merged
