"""SQLite persistence of the catalog and its change log.

Entries are stored as serialized `ModelEntry` messages (the proto is the
schema); the change log keeps every upsert and removal with its revision so a
watcher can resume from the last revision it saw, across registry restarts.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

from modelyard.v1 import common_pb2, registry_pb2

_SCHEMA = """
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
"""

# Oldest changes are pruned past this many; a watcher further behind gets a snapshot.
CHANGE_LOG_LIMIT = 10_000


class CatalogStore:
    """The catalog on disk. Each write is one transaction: all of it or none."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def load_all(self) -> Iterator[common_pb2.ModelEntry]:
        for (blob,) in self._db.execute("SELECT entry FROM models ORDER BY id"):
            yield common_pb2.ModelEntry.FromString(blob)

    def revision(self) -> int:
        row = self._db.execute("SELECT MAX(revision) FROM changes").fetchone()
        return int(row[0] or 0)

    def oldest_revision(self) -> int:
        row = self._db.execute("SELECT MIN(revision) FROM changes").fetchone()
        return int(row[0] or 0)

    def next_revision(self) -> int:
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'changes'").fetchone()
        return int(row[0]) + 1 if row else 1

    def write_change(
        self, kind: registry_pb2.ModelChange.Kind.ValueType, entry: common_pb2.ModelEntry
    ) -> int:
        """Apply one upsert or removal and log it; returns its revision."""
        blob = entry.SerializeToString()
        with self._transaction():
            cur = self._db.execute(
                "INSERT INTO changes (kind, model_id, entry) VALUES (?, ?, ?)",
                (int(kind), entry.id, blob),
            )
            revision = int(cur.lastrowid or 0)
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
        ).fetchall()
        return [
            registry_pb2.ModelChange(
                kind=kind, revision=rev, model=common_pb2.ModelEntry.FromString(blob)
            )
            for rev, kind, blob in rows
        ]

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
