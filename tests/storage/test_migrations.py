"""Migrations applied on open: old files kept, each version applied once, racing starts safe.

On both engines where it applies: an SQLite file made before migrations were
kept (by today's tables, written here as that code wrote them) opens with
its rows; a store records each version once; a database a newer modelyard
migrated is refused; a failing migration leaves nothing; several
connections migrating one PostgreSQL database at once apply each migration
once (the store's advisory lock).
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import psycopg
import pytest
from conftest import StorePlace

from modelyard.gateway.conversations import ConversationStore
from modelyard.hotswap.store import HotSwapStore
from modelyard.registry.store import CatalogStore
from modelyard.storage import DatabaseUrl, StoreSchema, open_store
from modelyard.storage.migrations import migrate
from modelyard_client.errors import FailedPrecondition
from modelyard_client.v1 import common_pb2, hotswap_pb2, registry_pb2

# The tables as modelyard made them before migrations were kept, and rows that code wrote.
OLD_REGISTRY = """
CREATE TABLE models (id TEXT PRIMARY KEY, entry BLOB NOT NULL);
CREATE TABLE changes (
    revision INTEGER PRIMARY KEY AUTOINCREMENT, kind INTEGER NOT NULL,
    model_id TEXT NOT NULL, entry BLOB NOT NULL);
CREATE TABLE versions (
    model_id TEXT NOT NULL, version TEXT NOT NULL, seq INTEGER NOT NULL, entry BLOB NOT NULL,
    PRIMARY KEY (model_id, version));
CREATE TABLE pins (model_id TEXT PRIMARY KEY, version TEXT NOT NULL);
CREATE TABLE providers (name TEXT PRIMARY KEY, provider BLOB NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
OLD_HOTSWAP = """
CREATE TABLE routes (key TEXT PRIMARY KEY, revision INTEGER NOT NULL, route BLOB NOT NULL);
CREATE TABLE swaps (swap_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, status BLOB NOT NULL);
CREATE TABLE ab_tests (id TEXT PRIMARY KEY, seq INTEGER NOT NULL, test BLOB NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
OLD_CONVERSATIONS = """
CREATE TABLE conversations (id TEXT PRIMARY KEY, system TEXT NOT NULL);
CREATE TABLE turns (
    conversation_id TEXT NOT NULL, seq INTEGER NOT NULL, messages TEXT NOT NULL,
    PRIMARY KEY (conversation_id, seq));
"""


def _old_file(path: Path, script: str, *rows: tuple[str, tuple[object, ...]]) -> None:
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.executescript(script)
        for sql, params in rows:
            db.execute(sql, params)


def _versions(path: Path) -> list[int]:
    with closing(sqlite3.connect(path)) as db:
        return [v for (v,) in db.execute("SELECT version FROM schema_migrations ORDER BY 1")]


def test_an_old_catalog_file_opens_with_its_rows_and_is_recorded_at_version_1(
    tmp_path: Path,
) -> None:
    path = tmp_path / "registry.sqlite3"
    entry = common_pb2.ModelEntry(id="local/a", provider="local", revision=7, version="1")
    blob = entry.SerializeToString()
    _old_file(
        path,
        OLD_REGISTRY,
        ("INSERT INTO meta VALUES ('catalog_id', 'c0ffee')", ()),
        ("INSERT INTO models VALUES ('local/a', ?)", (blob,)),
        ("INSERT INTO versions VALUES ('local/a', '1', 1, ?)", (blob,)),
        ("INSERT INTO pins VALUES ('local/a', '1')", ()),
        (
            "INSERT INTO changes (revision, kind, model_id, entry) VALUES (7, 1, 'local/a', ?)",
            (blob,),
        ),
    )
    store = CatalogStore(path)
    assert store.catalog_id == "c0ffee"
    assert list(store.load_all()) == [entry]
    assert (store.revision(), store.next_revision(), store.pins()) == (7, 8, {"local/a": "1"})
    assert store.versions("local/a") == [entry]
    nxt = common_pb2.ModelEntry(id="local/b", provider="local", revision=8)
    assert store.write_change(registry_pb2.ModelChange.KIND_UPSERTED, nxt) == 8
    store.close()
    assert _versions(path) == [1]


def test_an_old_route_table_and_conversation_file_keep_their_rows(tmp_path: Path) -> None:
    routes = tmp_path / "hotswap.sqlite3"
    route = hotswap_pb2.Route(model_id="local/a", revision=3)
    _old_file(
        routes,
        OLD_HOTSWAP,
        ("INSERT INTO meta VALUES ('table_id', 't1'), ('revision', '3')", ()),
        ("INSERT INTO routes VALUES ('chat', 3, ?)", (route.SerializeToString(),)),
    )
    table = HotSwapStore(routes)
    assert (table.table_id, table.revision(), list(table.load_all())) == (
        "t1",
        3,
        [("chat", route)],
    )
    assert table.put("code", hotswap_pb2.Route(model_id="local/b")).revision == 4
    table.close()
    chats = tmp_path / "conversations.sqlite3"
    _old_file(
        chats,
        OLD_CONVERSATIONS,
        ("INSERT INTO conversations VALUES ('c1', 'be brief')", ()),
        ("INSERT INTO turns VALUES ('c1', 1, ?)", ('[{"role": "user", "content": "hi"}]',)),
    )
    conversations = ConversationStore(chats)
    assert conversations.system("c1") == "be brief"
    conversations.add_turn("c1", None, [common_pb2.ChatMessage(role="user", content="again")])
    assert [[m.content for m in t] for t in conversations.turns("c1")] == [["hi"], ["again"]]
    conversations.close()
    assert _versions(routes) == _versions(chats) == [1]


V1 = "CREATE TABLE things (id TEXT PRIMARY KEY)"
V2 = "ALTER TABLE things ADD COLUMN size INTEGER NOT NULL DEFAULT 0"


def test_each_migration_is_applied_once_in_order_and_recorded(store_place: StorePlace) -> None:
    where = store_place("s.sqlite3")
    first = StoreSchema("things", (V1,))
    db = open_store(where, first)
    db.execute("INSERT INTO things (id) VALUES (?)", ("a",))
    assert migrate(db, first) == []  # V1 has no IF NOT EXISTS: a second run would fail
    db.close()
    grown = StoreSchema("things", (V1, V2))
    db = open_store(where, grown)
    assert db.execute("SELECT id, size FROM things") == [("a", 0)]
    assert db.execute("SELECT version FROM schema_migrations ORDER BY version") == [(1,), (2,)]
    assert migrate(db, grown) == []
    db.close()
    with pytest.raises(FailedPrecondition) as refused:  # an older modelyard on a newer store
        open_store(where, first)
    assert str(refused.value) == (
        "the things store is at schema version 2; this modelyard knows versions up to 1 "
        "(a newer modelyard wrote it)"
    )


def test_a_failing_migration_leaves_no_table_and_no_record(store_place: StorePlace) -> None:
    where = store_place("s.sqlite3")
    broken = StoreSchema("things", (f"{V1}; CREATE TABLE things (again TEXT)",))
    with pytest.raises((sqlite3.Error, psycopg.Error)):
        open_store(where, broken)
    db = open_store(where, StoreSchema("things", (V1,)))  # the first statement was rolled back
    assert db.execute("SELECT version FROM schema_migrations") == [(1,)]
    db.close()


def test_processes_starting_at_once_on_one_postgresql_each_migration_runs_once(
    postgres_url: DatabaseUrl,
) -> None:
    # Eight connections open the same store at the same moment; V1 fails if run twice.
    schema = StoreSchema("things", (V1, V2))
    start = threading.Barrier(8)
    applied: list[list[int]] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            start.wait()
            db = open_store(postgres_url, schema)
            applied.append(migrate(db, schema))
            db.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    db = open_store(postgres_url, schema)
    assert db.execute("SELECT version FROM schema_migrations ORDER BY version") == [(1,), (2,)]
    db.close()


def test_the_three_stores_share_one_postgresql_database_each_in_its_own_schema(
    postgres_url: DatabaseUrl,
) -> None:
    catalog, routes, chats = (
        CatalogStore(postgres_url),
        HotSwapStore(postgres_url),
        ConversationStore(postgres_url),
    )
    for store in (catalog, routes, chats):
        store.close()
    with psycopg.connect(postgres_url.url) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema IN ('registry', 'hotswap', 'conversations') ORDER BY 1, 2"
        ).fetchall()
    assert tables == [
        ("conversations", "conversations"),
        ("conversations", "schema_migrations"),
        ("conversations", "turns"),
        ("hotswap", "ab_tests"),
        ("hotswap", "meta"),
        ("hotswap", "routes"),
        ("hotswap", "schema_migrations"),
        ("hotswap", "swaps"),
        ("registry", "changes"),
        ("registry", "meta"),
        ("registry", "models"),
        ("registry", "pins"),
        ("registry", "providers"),
        ("registry", "schema_migrations"),
        ("registry", "versions"),
    ]
