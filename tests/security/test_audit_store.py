"""The audit store on both engines (`store_place`: an SQLite file, a real PostgreSQL):
append-only for every other connection, pruned by its own retention alone, and an
audit.sqlite3 written before migrations were kept opens with its rows and migrates."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import StorePlace

from modelyard.security.audit import AuditQuery, AuditRecord, AuditStore
from modelyard.storage import DatabaseUrl

GENERATE = "modelyard.v1.GatewayService/Generate"

# audit.sqlite3 as modelyard wrote it before the store moved onto `modelyard.storage`
# (security/audit.py at dba20bb): its schema, word for word.
OLD_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    key_id TEXT NOT NULL,
    rpc TEXT NOT NULL,
    model_requested TEXT NOT NULL,
    model_served TEXT NOT NULL,
    tokens_in INTEGER NOT NULL,
    tokens_out INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    code TEXT NOT NULL,
    reason TEXT NOT NULL,
    latency_ms REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at);
CREATE INDEX IF NOT EXISTS audit_key_at ON audit (key_id, at);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: UPDATE is refused'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: DELETE is refused'); END;
"""

Run = Callable[[str], Any]  # a statement from another connection


@contextmanager
def _other_connection(where: Path | DatabaseUrl) -> Iterator[Run]:
    """A connection of someone else's to the store's table (not through the store)."""
    if isinstance(where, DatabaseUrl):
        with psycopg.connect(where.url, autocommit=True, options="-c search_path=audit") as pg:

            def run(sql: str) -> Any:
                cursor = pg.execute(sql.encode())
                return cursor.fetchall() if cursor.description is not None else None

            yield run
    else:
        db = sqlite3.connect(where, isolation_level=None)
        try:
            yield lambda sql: db.execute(sql).fetchall()
        finally:
            db.close()


REFUSED = (sqlite3.DatabaseError, psycopg.Error)


def test_no_other_connection_can_update_delete_or_truncate(store_place: StorePlace) -> None:
    where = store_place("audit.sqlite3")
    store = AuditStore(where)
    store.append([AuditRecord(rpc=GENERATE, at=time.time(), key_id="k1").row()])
    with _other_connection(where) as run:
        with pytest.raises(REFUSED, match="append-only: UPDATE is refused"):
            run("UPDATE audit SET key_id = 'someone-else'")
        with pytest.raises(REFUSED, match="append-only: DELETE is refused"):
            run("DELETE FROM audit")
        if isinstance(where, DatabaseUrl):  # SQLite has no TRUNCATE
            with pytest.raises(REFUSED, match="append-only: TRUNCATE is refused"):
                run("TRUNCATE audit")
        assert run("SELECT key_id FROM audit") == [("k1",)]
    store.close()


def test_retention_prunes_only_old_rows_and_the_trigger_is_back(store_place: StorePlace) -> None:
    where = store_place("audit.sqlite3")
    store = AuditStore(where)
    now = time.time()
    store.append(
        [
            AuditRecord(rpc=GENERATE, at=now - 91 * 86_400, key_id="old").row(),
            AuditRecord(rpc=GENERATE, at=now - 90.5 * 86_400, key_id="older").row(),
            AuditRecord(rpc=GENERATE, at=now - 89 * 86_400, key_id="kept").row(),
            AuditRecord(rpc=GENERATE, at=now, key_id="new", ttft_ms=12.5, attempts=2).row(),
        ]
    )
    assert store.prune(now - 90 * 86_400) == 2
    assert store.prune(now - 90 * 86_400) == 0
    rows, more = store.query(AuditQuery())
    assert ([r.key_id for r in rows], more) == (["new", "kept"], False)
    assert (rows[0].ttft_ms, rows[0].attempts) == (12.5, 2)
    with _other_connection(where) as run, pytest.raises(REFUSED, match="DELETE is refused"):
        run("DELETE FROM audit WHERE key_id = 'kept'")
    store.close()


def test_several_stores_on_one_postgresql_share_the_log(postgres_url: DatabaseUrl) -> None:
    """Gateway replicas on one PostgreSQL: each appends, any one reads them all."""
    first, second = AuditStore(postgres_url), AuditStore(postgres_url)
    first.append([AuditRecord(rpc=GENERATE, at=time.time(), key_id="via-first").row()])
    second.append([AuditRecord(rpc=GENERATE, at=time.time(), key_id="via-second").row()])
    rows, _ = first.query(AuditQuery())
    assert [r.key_id for r in rows] == ["via-second", "via-first"]
    assert first.engine == "postgresql"
    first.close()
    second.close()


def test_an_audit_file_from_before_migrations_opens_with_its_rows_and_migrates(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.sqlite3"
    old = sqlite3.connect(path, isolation_level=None)
    old.executescript(OLD_SCHEMA)
    old.execute(
        "INSERT INTO audit (at, key_id, rpc, model_requested, model_served, tokens_in, "
        "tokens_out, cost_usd, code, reason, latency_ms) "
        "VALUES (?, 'k-old', ?, 'a/m', 'a/m', 7, 3, 0.5, 'OK', '', 41.0)",
        (time.time() - 60, GENERATE),
    )
    old.close()

    store = AuditStore(path)
    store.append([AuditRecord(rpc=GENERATE, at=time.time(), key_id="k-new", attempts=1).row()])
    rows, _ = store.query(AuditQuery())
    assert [(r.key_id, r.tokens_in, r.cost_usd, r.ttft_ms, r.attempts) for r in rows] == [
        ("k-new", 0, 0.0, 0.0, 1),
        ("k-old", 7, 0.5, 0.0, 0),  # kept, the new columns at their default
    ]
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall() == [
        (1,),
        (2,),
    ]
    with pytest.raises(sqlite3.DatabaseError, match="UPDATE is refused"):
        db.execute("UPDATE audit SET attempts = 5")
    db.close()
    AuditStore(path).close()  # opened again: nothing left to apply, nothing refused
