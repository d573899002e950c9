"""Persistence of the hot-swap service: its route table, swaps and A/B tests
(`modelyard.storage`: an SQLite file, or the ``hotswap`` schema on PostgreSQL).

A route is stored as its serialized `Route` message (the proto is the schema)
under its key, an alias or a task type. Revisions count every write to one
table (a file, or a PostgreSQL database), named by a random id made with it: a
new one counts from 1 again, and its id tells a watcher so. The counter is
advanced inside the write's transaction (``UPDATE ... RETURNING``, under the
store's write lock), so writers in several processes never share a revision.
A route table holds tens of routes, not millions: a watcher resuming is sent
every route changed since its revision, read from the table itself, so no
separate change log is kept.

An A/B test is stored as its `ABTest` when it starts, as its figures
change (at most once per batch of outcomes) and when it ends.
A swap is stored as its `SwapStatus` at each change of phase. Its switch is
one transaction with the route's write (`switch`): whatever stops the
process, the route and the swap agree on which model serves.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

from modelyard.storage import DatabaseUrl, StoreSchema, open_store
from modelyard_client.v1 import hotswap_pb2

_TABLES = """
CREATE TABLE IF NOT EXISTS routes (
    key TEXT PRIMARY KEY,
    revision INTEGER NOT NULL,
    route BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS swaps (
    swap_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    status BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS ab_tests (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    test BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""
SCHEMA = StoreSchema("hotswap", (_TABLES,))


class HotSwapStore:
    """The route table on disk. Each write is one transaction: all of it or none."""

    def __init__(self, where: Path | DatabaseUrl) -> None:
        """`where`: the SQLite file, or the PostgreSQL server."""
        self._db = open_store(where, SCHEMA)
        self._db.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('table_id', ?)", (uuid.uuid4().hex,)
        )
        self._db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('revision', '0')")
        row = self._db.fetchone("SELECT value FROM meta WHERE key = 'table_id'")
        assert row is not None
        self.table_id: str = row[0]

    def close(self) -> None:
        self._db.close()

    def revision(self) -> int:
        row = self._db.fetchone("SELECT value FROM meta WHERE key = 'revision'")
        assert row is not None
        return int(row[0])

    def load_all(self) -> Iterator[tuple[str, hotswap_pb2.Route]]:
        """Every route with its key, oldest change first."""
        for key, blob in self._db.execute("SELECT key, route FROM routes ORDER BY revision"):
            yield key, hotswap_pb2.Route.FromString(blob)

    def put(self, key: str, route: hotswap_pb2.Route) -> hotswap_pb2.Route:
        """Store `route` under `key` at the next revision; the stored copy, revision set."""
        return self._write(key, route, None)

    def switch(
        self, key: str, route: hotswap_pb2.Route, swap: hotswap_pb2.SwapStatus
    ) -> hotswap_pb2.Route:
        """`put` and `put_swap` in one transaction: both are stored, or neither."""
        return self._write(key, route, swap)

    def put_swap(self, swap: hotswap_pb2.SwapStatus) -> None:
        """Store a swap's status (a new swap after every other, an old one in its place)."""
        with self._db.write():
            self._put_swap(swap)

    def load_swaps(self) -> Iterator[hotswap_pb2.SwapStatus]:
        """Every swap, oldest first."""
        for (blob,) in self._db.execute("SELECT status FROM swaps ORDER BY seq"):
            yield hotswap_pb2.SwapStatus.FromString(blob)

    def put_test(self, test: hotswap_pb2.ABTest) -> None:
        """Store an A/B test (a new one after every other, an old one in its place)."""
        with self._db.write():
            self._upsert("ab_tests", "id", "test", test.id, test.SerializeToString())

    def load_tests(self) -> Iterator[hotswap_pb2.ABTest]:
        """Every A/B test, oldest first."""
        for (blob,) in self._db.execute("SELECT test FROM ab_tests ORDER BY seq"):
            yield hotswap_pb2.ABTest.FromString(blob)

    def _put_swap(self, swap: hotswap_pb2.SwapStatus) -> None:
        self._upsert("swaps", "swap_id", "status", swap.swap_id, swap.SerializeToString())

    def _upsert(self, table: str, key_column: str, blob_column: str, key: str, blob: bytes) -> None:
        """A new row after every other (`seq`), or the row `key` has, its blob replaced
        (`table` and the columns are this module's names, never a caller's)."""
        self._db.execute(
            f"INSERT INTO {table} ({key_column}, seq, {blob_column}) "
            f"VALUES (?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM {table}), ?) "
            f"ON CONFLICT ({key_column}) DO UPDATE SET {blob_column} = excluded.{blob_column}",
            (key, blob),
        )

    def _write(
        self, key: str, route: hotswap_pb2.Route, swap: hotswap_pb2.SwapStatus | None
    ) -> hotswap_pb2.Route:
        stored = hotswap_pb2.Route()
        stored.CopyFrom(route)
        with self._db.write():
            row = self._db.fetchone(
                "UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) "
                "WHERE key = 'revision' RETURNING value"
            )
            assert row is not None
            stored.revision = int(row[0])
            self._db.execute(
                "INSERT INTO routes (key, revision, route) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET revision = excluded.revision, "
                "route = excluded.route",
                (key, stored.revision, stored.SerializeToString()),
            )
            if swap is not None:
                self._put_swap(swap)
        return stored
