"""The model catalog: the registry's domain, free of gRPC.

Holds every entry in memory for reads, persists each change to SQLite before
it becomes visible, and fans changes out to watchers. Revisions are the
change log's sequence numbers, so they keep growing across restarts and a
watcher can resume where it stopped; a watcher names the catalog its revision
counts in (`catalog_id`), since a new catalog file counts from 1 again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Iterable

from modelyard.catalog_limits import HEALTH_REASON_CHARS
from modelyard.enum_values import check_all_known, check_known
from modelyard.registry.store import CatalogStore
from modelyard.registry.validation import check_entry, check_model_id, check_quality
from modelyard_client.errors import (
    AlreadyExists,
    FailedPrecondition,
    ModelNotFound,
    WatcherFellBehind,
)
from modelyard_client.v1 import common_pb2, registry_pb2

Change = registry_pb2.ModelChange
# A watcher that falls this far behind is cut off and told to resume (after the
# changes it holds: dropping a queued change would leave a gap it resumes past).
WATCH_QUEUE_LIMIT = 4096


def with_defaults(entry: common_pb2.ModelEntry) -> common_pb2.ModelEntry:
    """A copy with the defaults a stored entry has: a name, and healthy unless told otherwise.

    Registered and discovered entries alike (`discovery_sync`). An entry given
    no health is healthy with no reason: a reason explains a health someone gave.
    """
    stored = common_pb2.ModelEntry()
    stored.CopyFrom(entry)
    if not stored.name:
        stored.name = stored.id.split("/", 1)[-1]
    if stored.health == common_pb2.HEALTH_STATUS_UNSPECIFIED:
        stored.health = common_pb2.HEALTH_STATUS_HEALTHY
        stored.health_reason = ""
    return stored


def same_content(a: common_pb2.ModelEntry, b: common_pb2.ModelEntry) -> bool:
    """Equal apart from the bookkeeping (revision, update time)."""
    a2, b2 = common_pb2.ModelEntry(), common_pb2.ModelEntry()
    a2.CopyFrom(a)
    b2.CopyFrom(b)
    for e in (a2, b2):
        e.ClearField("revision")
        e.ClearField("updated_at")
    return a2 == b2


def bounded_reason(reason: str) -> str:
    """`reason` cut to `HEALTH_REASON_CHARS` (an upstream's error can be any length)."""
    if len(reason) <= HEALTH_REASON_CHARS:
        return reason
    return reason[: HEALTH_REASON_CHARS - 1] + "…"


# Queue markers besides changes: the watcher was cut off, or the registry is stopping.
_FELL_BEHIND = "fell-behind"
_STOPPING = "stopping"


class Catalog:
    def __init__(self, store: CatalogStore) -> None:
        self._store = store
        self._entries: dict[str, common_pb2.ModelEntry] = {}
        # capability -> ids: "which models can do X" without a scan
        self._by_capability: dict[int, set[str]] = {}
        for entry in store.load_all():
            self._index(entry)
        self._watchers: set[asyncio.Queue[Change | str]] = set()

    @property
    def store(self) -> CatalogStore:
        return self._store

    def _index(self, entry: common_pb2.ModelEntry) -> None:
        old = self._entries.get(entry.id)
        if old is not None:
            for cap in old.capabilities:
                self._by_capability.get(cap, set()).discard(old.id)
        self._entries[entry.id] = entry
        for cap in entry.capabilities:
            self._by_capability.setdefault(cap, set()).add(entry.id)

    def _unindex(self, model_id: str) -> None:
        old = self._entries.pop(model_id, None)
        if old is not None:
            for cap in old.capabilities:
                self._by_capability.get(cap, set()).discard(model_id)

    def close(self) -> None:
        self._store.close()

    # ---- reads --------------------------------------------------------------

    @property
    def revision(self) -> int:
        return self._store.revision()

    @property
    def catalog_id(self) -> str:
        """This catalog's id: which catalog its revisions count in."""
        return self._store.catalog_id

    def get(self, model_id: str) -> common_pb2.ModelEntry:
        try:
            return self._entries[model_id]
        except KeyError:
            raise ModelNotFound(model_id, "the registry") from None

    def list(
        self,
        *,
        provider: str = "",
        backend: str = "",
        capabilities: Iterable[common_pb2.Capability.ValueType] = (),
        include_unavailable: bool = False,
    ) -> list[common_pb2.ModelEntry]:
        check_all_known(common_pb2.Capability.DESCRIPTOR, capabilities, "capabilities")
        wanted = set(capabilities)
        if wanted:
            ids = set.intersection(*(self._by_capability.get(c, set()) for c in wanted))
            pool = [self._entries[i] for i in ids]
        else:
            pool = list(self._entries.values())
        out = []
        for entry in sorted(pool, key=lambda e: e.id):
            if provider and entry.provider != provider:
                continue
            if backend and all(d.backend != backend for d in entry.deployments):
                continue
            if not include_unavailable and entry.health == common_pb2.HEALTH_STATUS_UNAVAILABLE:
                continue
            out.append(entry)
        return out

    # ---- writes -------------------------------------------------------------

    def register(
        self, entry: common_pb2.ModelEntry, *, upsert: bool, merge_deployments: bool = False
    ) -> common_pb2.ModelEntry:
        """Store a model (validated first: a bad entry changes nothing)."""
        check_entry(entry)
        if entry.id in self._entries and not upsert:
            raise AlreadyExists(
                f"model '{entry.id}' is already registered; pass upsert to replace it"
            )
        stored = with_defaults(entry)
        current = self._entries.get(entry.id)
        if current is not None and current.HasField("quality") and not entry.HasField("quality"):
            stored.quality.CopyFrom(current.quality)  # the registry's measure, not the backend's
        if merge_deployments and current is not None:
            mine = {d.endpoint for d in stored.deployments}
            others = [d for d in current.deployments if d.endpoint not in mine]
            del stored.deployments[:]
            stored.deployments.extend([*others, *entry.deployments])
            check_entry(stored)  # merged, it may hold too many deployments
        return self.put(stored)

    def put(self, entry: common_pb2.ModelEntry) -> common_pb2.ModelEntry:
        """Store a checked entry as current; a write that changes nothing is skipped."""
        current = self._entries.get(entry.id)
        if current is not None and same_content(current, entry):
            return current
        return self._commit(Change.KIND_UPSERTED, entry)

    def unregister(self, model_id: str) -> int:
        check_model_id(model_id)
        entry = self.get(model_id)
        removed = common_pb2.ModelEntry(id=entry.id, provider=entry.provider)
        return self._commit(Change.KIND_REMOVED, removed).revision

    def update_quality(
        self, model_id: str, quality: common_pb2.ModelQuality
    ) -> common_pb2.ModelEntry:
        """Set a model's evaluated quality (checked: a share, a bounded suite name)."""
        check_quality(model_id, quality)
        updated = common_pb2.ModelEntry()
        updated.CopyFrom(self.get(model_id))
        updated.quality.CopyFrom(quality)
        return self._commit(Change.KIND_UPSERTED, updated)

    def update_health(
        self, model_id: str, health: common_pb2.HealthStatus.ValueType, reason: str
    ) -> common_pb2.ModelEntry:
        """Set a model's health; a reason over `HEALTH_REASON_CHARS` is cut, not refused."""
        check_known(common_pb2.HealthStatus.DESCRIPTOR, health, "health", f"model '{model_id}'")
        reason = bounded_reason(reason)
        updated = common_pb2.ModelEntry()
        updated.CopyFrom(self.get(model_id))
        updated.health = health
        updated.health_reason = reason
        return self._commit(Change.KIND_UPSERTED, updated)

    def _commit(
        self, kind: registry_pb2.ModelChange.Kind.ValueType, entry: common_pb2.ModelEntry
    ) -> common_pb2.ModelEntry:
        entry.revision = self._store.next_revision()
        entry.updated_at.FromNanoseconds(time.time_ns())
        revision = self._store.write_change(kind, entry)
        if revision != entry.revision:  # another writer on the same file
            entry.revision = revision
        if kind == Change.KIND_REMOVED:
            self._unindex(entry.id)
        else:
            self._index(entry)
        self._publish(Change(kind=kind, revision=revision, model=entry))
        return entry

    # ---- watching -----------------------------------------------------------

    def _publish(self, change: Change) -> None:
        for queue in list(self._watchers):
            if queue.qsize() < WATCH_QUEUE_LIMIT:
                queue.put_nowait(change)
            else:
                self._watchers.discard(queue)
                queue.put_nowait(_FELL_BEHIND)

    def end_watches(self) -> None:
        """End every watch stream normally, after the changes it holds (the registry is
        stopping; watchers resume elsewhere from the last one)."""
        for queue in list(self._watchers):
            self._watchers.discard(queue)
            queue.put_nowait(_STOPPING)

    async def watch(
        self, after_revision: int, catalog_id: str = ""
    ) -> AsyncGenerator[Change, None]:
        """Changes after `after_revision` (0: a snapshot), a SYNCED marker, then live changes.

        `catalog_id`: the catalog `after_revision` counts in (the SYNCED marker's);
        another than this one is refused, empty is not checked.
        """
        # Unbounded for the markers; `_publish` keeps the changes to WATCH_QUEUE_LIMIT.
        queue: asyncio.Queue[Change | str] = asyncio.Queue()
        self._watchers.add(queue)  # before reading the backlog, so nothing falls between
        try:
            last = after_revision
            if after_revision == 0:
                last = self.revision
                for entry in sorted(self._entries.values(), key=lambda e: e.id):
                    yield Change(kind=Change.KIND_UPSERTED, revision=entry.revision, model=entry)
            else:
                current, oldest = self.revision, self._store.oldest_revision()
                if catalog_id and catalog_id != self.catalog_id:
                    raise FailedPrecondition(
                        f"after_revision {after_revision} counts in catalog {catalog_id}, "
                        f"not in this registry's catalog {self.catalog_id} (it started over); "
                        "resume with after_revision=0"
                    )
                if after_revision > current:
                    raise FailedPrecondition(
                        f"after_revision {after_revision} is ahead of the registry "
                        f"(revision {current}); resume with after_revision=0"
                    )
                if oldest and after_revision < oldest - 1:
                    raise WatcherFellBehind(
                        f"after_revision {after_revision} is older than the change log "
                        f"(oldest {oldest}); resume with after_revision=0"
                    )
                for change in self._store.changes_after(after_revision):
                    last = change.revision
                    yield change
            yield Change(kind=Change.KIND_SYNCED, revision=last, catalog_id=self.catalog_id)
            while True:
                item = await queue.get()
                if item == _STOPPING:
                    return
                if not isinstance(item, Change):
                    raise WatcherFellBehind(
                        f"watcher fell more than {WATCH_QUEUE_LIMIT} changes behind; "
                        f"resume with after_revision={last}"
                    )
                if item.revision > last:
                    last = item.revision
                    yield item
        finally:
            self._watchers.discard(queue)
