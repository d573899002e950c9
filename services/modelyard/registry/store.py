"""Persistence of the catalog and its change log (`modelyard.storage`: an SQLite file,
or the ``registry`` schema on PostgreSQL).

Entries are stored as serialized `ModelEntry` messages (the proto is the
schema); the change log keeps every upsert and removal with its revision so a
watcher can resume from the last revision it saw, across registry restarts.
Revisions count within one catalog (a file, or a PostgreSQL database), named by
a random id made with it: a new one counts from 1 again, and its id tells a
watcher so. A revision is the change log's counter (AUTOINCREMENT, an identity
on PostgreSQL), handed out inside the write's transaction under the store's
write lock, so writers in several processes never share one and commit in
order.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

from modelyard.storage import DatabaseUrl, StoreSchema, open_store
from modelyard_client.v1 import common_pb2, registry_pb2

_TABLES = """
CREATE TABLE IF NOT EXISTS models (
    id TEXT PRIMARY KEY,
    entry BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS changes (
    revision INTEGER PRIMARY KEY AUTOINCREMENT,
    kind INTEGER NOT NULL,
    model_id TEXT NOT NULL,
    entry BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    model_id TEXT NOT NULL,
    version TEXT NOT NULL,
    seq INTEGER NOT NULL,
    entry BLOB NOT NULL,
    PRIMARY KEY (model_id, version)
);
CREATE TABLE IF NOT EXISTS pins (
    model_id TEXT PRIMARY KEY,
    version TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS providers (
    name TEXT PRIMARY KEY,
    provider BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""
SCHEMA = StoreSchema("registry", (_TABLES,))

# Oldest changes are pruned past this many; a watcher further behind gets a snapshot.
CHANGE_LOG_LIMIT = 10_000


class CatalogStore:
    """The catalog on disk. Each write is one transaction: all of it or none."""

    def __init__(self, where: Path | DatabaseUrl) -> None:
        """`where`: the SQLite file, or the PostgreSQL server."""
        self._db = open_store(where, SCHEMA)
        self._db.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('catalog_id', ?)", (uuid.uuid4().hex,)
        )
        row = self._db.fetchone("SELECT value FROM meta WHERE key = 'catalog_id'")
        assert row is not None
        self.catalog_id: str = row[0]

    def close(self) -> None:
        self._db.close()

    def load_all(self) -> Iterator[common_pb2.ModelEntry]:
        for (blob,) in self._db.execute("SELECT entry FROM models ORDER BY id"):
            yield common_pb2.ModelEntry.FromString(blob)

    def revision(self) -> int:
        row = self._db.fetchone("SELECT MAX(revision) FROM changes")
        return int(row[0] or 0) if row else 0

    def oldest_revision(self) -> int:
        row = self._db.fetchone("SELECT MIN(revision) FROM changes")
        return int(row[0] or 0) if row else 0

    def next_revision(self) -> int:
        """The revision the next change will likely get (another writer may take it first:
        `write_change` returns the one it got)."""
        return self._db.last_counter("changes", "revision") + 1

    def write_change(
        self, kind: registry_pb2.ModelChange.Kind.ValueType, entry: common_pb2.ModelEntry
    ) -> int:
        """Apply one upsert or removal and log it; returns its revision.

        An upserted entry with a version is also kept as that version. Every copy stored
        carries the revision it got (`entry` itself is not changed).
        """
        blob = entry.SerializeToString()
        with self._db.write():
            row = self._db.fetchone(
                "INSERT INTO changes (kind, model_id, entry) VALUES (?, ?, ?) RETURNING revision",
                (int(kind), entry.id, blob),
            )
            assert row is not None
            revision = int(row[0])
            if revision != entry.revision:  # another writer took the one it expected
                stored = common_pb2.ModelEntry()
                stored.CopyFrom(entry)
                stored.revision = revision
                blob = stored.SerializeToString()
                self._db.execute(
                    "UPDATE changes SET entry = ? WHERE revision = ?", (blob, revision)
                )
            if kind != registry_pb2.ModelChange.KIND_REMOVED and entry.version:
                self._put_version(entry, blob)
            if kind == registry_pb2.ModelChange.KIND_REMOVED:
                self._db.execute("DELETE FROM models WHERE id = ?", (entry.id,))
            else:
                self._db.execute(
                    "INSERT INTO models (id, entry) VALUES (?, ?) "
                    "ON CONFLICT(id) DO UPDATE SET entry = excluded.entry",
                    (entry.id, blob),
                )
            self._db.execute(
                "DELETE FROM changes WHERE revision <= ?", (revision - CHANGE_LOG_LIMIT,)
            )
        return revision

    def changes_after(self, revision: int) -> list[registry_pb2.ModelChange]:
        rows = self._db.execute(
            "SELECT revision, kind, entry FROM changes WHERE revision > ? ORDER BY revision",
            (revision,),
        )
        return [
            registry_pb2.ModelChange(
                kind=kind, revision=rev, model=common_pb2.ModelEntry.FromString(blob)
            )
            for rev, kind, blob in rows
        ]

    # ---- versions, pins, providers ---------------------------------------------

    def write_version(self, entry: common_pb2.ModelEntry) -> None:
        """Keep a version without making it current."""
        with self._db.write():
            self._put_version(entry, entry.SerializeToString())

    def _put_version(self, entry: common_pb2.ModelEntry, blob: bytes) -> None:
        self._db.execute(
            "INSERT INTO versions (model_id, version, seq, entry) VALUES (?, ?, "
            "(SELECT COALESCE(MAX(seq), 0) + 1 FROM versions), ?) "
            "ON CONFLICT(model_id, version) DO UPDATE SET entry = excluded.entry",
            (entry.id, entry.version, blob),
        )

    def versions(self, model_id: str) -> list[common_pb2.ModelEntry]:
        """Every kept version of a model, oldest registration first."""
        rows = self._db.execute(
            "SELECT entry FROM versions WHERE model_id = ? ORDER BY seq", (model_id,)
        )
        return [common_pb2.ModelEntry.FromString(blob) for (blob,) in rows]

    def set_pin(self, model_id: str, version: str) -> None:
        with self._db.write():
            if version:
                self._db.execute(
                    "INSERT INTO pins (model_id, version) VALUES (?, ?) "
                    "ON CONFLICT(model_id) DO UPDATE SET version = excluded.version",
                    (model_id, version),
                )
            else:
                self._db.execute("DELETE FROM pins WHERE model_id = ?", (model_id,))

    def pins(self) -> dict[str, str]:
        return {str(m): str(v) for m, v in self._db.execute("SELECT model_id, version FROM pins")}

    def save_provider(self, provider: registry_pb2.Provider) -> None:
        with self._db.write():
            self._db.execute(
                "INSERT INTO providers (name, provider) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET provider = excluded.provider",
                (provider.name, provider.SerializeToString()),
            )

    def delete_provider(self, name: str) -> None:
        with self._db.write():
            self._db.execute("DELETE FROM providers WHERE name = ?", (name,))

    def providers(self) -> list[registry_pb2.Provider]:
        rows = self._db.execute("SELECT provider FROM providers ORDER BY name")
        return [registry_pb2.Provider.FromString(blob) for (blob,) in rows]
