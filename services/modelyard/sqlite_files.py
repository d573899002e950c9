"""How modelyard opens an SQLite file: one rule for every store kept in SQLite.

The registry, hot-swap, conversation and audit stores open theirs through
`modelyard.storage` (which may put them on PostgreSQL instead); the key store
calls it directly.

Autocommit mode (each write is one `write_transaction`: ``BEGIN IMMEDIATE`` …
``COMMIT``, rolled back when it raises),
write-ahead logging with ``synchronous=NORMAL`` (a commit survives a process
crash; only a power cut can lose the last ones), usable from any thread, the
schema created when missing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def open_database(path: Path, schema: str) -> sqlite3.Connection:
    """The database at `path` (its directory made if need be), `schema` applied."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(schema)
    return db


@contextmanager
def write_transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One write: ``BEGIN IMMEDIATE`` (the write lock, taken first) … ``COMMIT``; a block
    that raises is rolled back, so a failed write changes nothing."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
