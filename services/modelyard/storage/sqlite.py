"""A store's SQLite file, opened by the one SQLite rule (`modelyard.sqlite_files`)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path

from modelyard.sqlite_files import open_database, write_transaction
from modelyard.storage.database import Database, Params, Row


class SqliteDatabase(Database):
    engine = "sqlite"

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._db = open_database(path, "")

    def close(self) -> None:
        self._db.close()

    def last_counter(self, table: str, column: str) -> int:
        # AUTOINCREMENT keeps one counter per table, whatever the column is called.
        row = self.fetchone("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,))
        return int(row[0]) if row else 0

    def _run(self, sql: str, params: Params) -> list[Row]:
        return self._db.execute(sql, tuple(params)).fetchall()

    def _run_as_written(self, sql: str) -> None:
        self._db.execute(sql)

    def _transaction(self) -> AbstractContextManager[None]:
        return write_transaction(self._db)
