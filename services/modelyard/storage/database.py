"""`Database`: what a store asks of its database, the same on SQLite and PostgreSQL.

A store writes SQLite's SQL (``?`` parameters, upper-case keywords); the
PostgreSQL side translates it (`modelyard.storage.dialect`). Outside `write`
every statement commits by itself; `write` is one transaction that takes the
store's write lock first (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: a
transaction-scoped advisory lock named after the store), so a read-then-write
inside it (the next ``seq``, the revision counter) sees no other writer, in
this process or another. One connection per store, shared by its threads: a
lock keeps one statement or one write transaction on it at a time.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from modelyard.storage.dialect import PerEngine, statements

Row = tuple[Any, ...]
Params = Sequence[object]


class Database(ABC):
    """One store's connection (see the module's docstring)."""

    engine: str  # "sqlite" or "postgresql"

    def __init__(self) -> None:
        self._lock = threading.RLock()

    def execute(self, sql: str, params: Params = ()) -> list[Row]:
        """Run one statement; the rows it returns (none for most writes)."""
        with self._lock:
            return self._run(sql, params)

    def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        rows = self.execute(sql, params)
        return rows[0] if rows else None

    def execute_own(self, sql: PerEngine) -> None:
        """`sql`'s shared script, then this engine's own statements, run as written."""
        with self._lock:
            for statement in statements(sql.shared):
                self._run(statement, ())
            for statement in sql.own(self.engine):
                self._run_as_written(statement)

    @contextmanager
    def write(self) -> Iterator[None]:
        """One write transaction, the store's write lock taken first; a block that raises
        is rolled back, so a failed write changes nothing."""
        with self._lock, self._transaction():
            yield

    @abstractmethod
    def last_counter(self, table: str, column: str) -> int:
        """The last value `table`'s AUTOINCREMENT `column` handed out (0: none yet), even
        if its row is gone. `table` and `column` are a store's own names."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def _run(self, sql: str, params: Params) -> list[Row]: ...

    @abstractmethod
    def _run_as_written(self, sql: str) -> None:
        """Run one statement in this engine's own SQL: untranslated, no parameters."""

    @abstractmethod
    def _transaction(self) -> AbstractContextManager[None]:
        """Begin with the write lock held; commit on leaving, roll back on an exception."""
