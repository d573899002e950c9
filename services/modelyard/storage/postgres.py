"""A store's namespace on a PostgreSQL server (psycopg 3, synchronous).

Each store keeps its tables in its own PostgreSQL schema (``registry``,
``hotswap``, ``conversations``, ``audit``), so the stores' table names (each has a
``meta``) never meet; one database holds them all. The connection is in
autocommit mode; `write` is a transaction whose first statement takes the
store's advisory lock (`pg_advisory_xact_lock`, released at its end), the
PostgreSQL counterpart of SQLite's ``BEGIN IMMEDIATE``: every process's writes
to one store are serialized, so a read-then-write needs no row lock and
revisions commit in the order they were counted. A connection the server
dropped is opened again for the next statement; a statement that runs past
`STATEMENT_TIMEOUT_MS` is cancelled by the server.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

import psycopg

from modelyard.storage.database import Database, Params, Row
from modelyard.storage.dialect import postgres_sql
from modelyard.storage.url import SOURCES, DatabaseUrl
from modelyard_client.errors import BackendUnavailable
from modelyard_client.scrub import scrub

CONNECT_TIMEOUT_S = 10
# The longest one statement may run, waits for the write lock included: the stores are
# called on the event loop, so a server that stops answering fails calls, not the process.
STATEMENT_TIMEOUT_MS = 10_000


def lock_key(schema: str) -> int:
    """The advisory lock of one store's writes (and migrations), the same in every process."""
    return zlib.crc32(f"modelyard.{schema}".encode())


class PostgresDatabase(Database):
    engine = "postgresql"

    def __init__(self, url: DatabaseUrl, schema: str) -> None:
        super().__init__()
        if not schema.isidentifier() or schema.lower() != schema:
            raise ValueError(f"schema name {schema!r} must be a lower-case identifier")
        self.url = url
        self.schema = schema
        self._lock_key = lock_key(schema)
        self._conn = self._connect()
        with self.write():  # under the lock: two processes creating it at once do not clash
            self._conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')

    def close(self) -> None:
        self._conn.close()

    def last_counter(self, table: str, column: str) -> int:
        row = self.fetchone("SELECT pg_get_serial_sequence(?, ?)", (table, column))
        if row is None or row[0] is None:
            raise ValueError(f"{table}.{column} has no counter")
        value = self.fetchone(f"SELECT last_value, is_called FROM {row[0]}")
        assert value is not None
        return int(value[0]) if value[1] else 0

    def _connect(self) -> psycopg.Connection[Row]:
        try:
            return psycopg.connect(
                self.url.url,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT_S,
                options=f"-c search_path={self.schema} -c statement_timeout={STATEMENT_TIMEOUT_MS}",
                application_name=f"modelyard-{self.schema}",
            )
        except psycopg.Error as exc:
            reason = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
            reason = scrub(reason)
            raise BackendUnavailable(
                f"{SOURCES}: cannot connect to PostgreSQL at {self.url.redacted}: {reason}"
            ) from None

    def _connection(self) -> psycopg.Connection[Row]:
        if self._conn.closed:  # the server or the network dropped it: a new one
            self._conn = self._connect()
        return self._conn

    def _run(self, sql: str, params: Params) -> list[Row]:
        cursor = self._connection().execute(postgres_sql(sql), tuple(params))
        return cursor.fetchall() if cursor.description is not None else []

    def _run_as_written(self, sql: str) -> None:
        self._connection().execute(sql)  # no parameters: no placeholders, `%` as written

    def _transaction(self) -> AbstractContextManager[None]:
        return self._locked_transaction()

    @contextmanager
    def _locked_transaction(self) -> Iterator[None]:
        conn = self._connection()
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_key,))
            yield
