"""The response cache one host's gateway processes share: a SQLite file, without Redis.

`modelyard up --workers N` with the cache on and no ``gateway.cache.redis_url`` puts
every process's cached answers in ``<data_dir>/response-cache.db``: an answer one
worker stored is a hit in every other. SQLite in write-ahead-log mode
(`modelyard.sqlite_files`): a read never waits for a writer, a write is one
transaction (a process killed mid-write leaves the file as it was), and what is
stored survives the processes.

Like the other stores, `get` and `put` never raise for the store's own failures: a
file that cannot be read or written (another process holding the write lock past
`BUSY_TIMEOUT_MS`, a full disk) is a miss, logged once a minute at most. An entry
past its TTL is a miss. The least recently used entries go first once there are
more than `max_entries`: each process trims every `TRIM_EVERY` writes, so the file
holds at most that many more between trims; a hit marks its entry used at most once
a second (`USED_EVERY_S`), so hits take no write lock of their own most of the time.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from modelyard.gateway.response_cache import CachedAnswer
from modelyard.sqlite_files import open_database, write_transaction

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 100
TRIM_EVERY = 64  # writes between trims to max_entries
USED_EVERY_S = 1.0  # a hit marks its entry used at most this often
LOG_EVERY_S = 60.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    expires_at REAL NOT NULL,
    used_at REAL NOT NULL,
    answer BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS answers_by_use ON answers (used_at);
"""


class SharedAnswerStore:
    """Cached answers in the SQLite file at `path`, shared by every process opening it.
    `clock`: wall-clock seconds (processes compare each other's expiry times)."""

    def __init__(
        self, path: Path, max_entries: int, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = path
        self.max_entries = max_entries
        self._clock = clock
        self._db = open_database(path, SCHEMA)
        self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        self._writes = 0
        self._logged_at = -LOG_EVERY_S

    async def get(self, key: str) -> CachedAnswer | None:
        now = self._clock()
        try:
            row = self._db.execute(
                "SELECT expires_at, used_at, answer FROM answers WHERE key = ?", (key,)
            ).fetchone()
            if row is None or row[0] <= now:
                return None
            if now - row[1] >= USED_EVERY_S:
                self._db.execute("UPDATE answers SET used_at = ? WHERE key = ?", (now, key))
        except sqlite3.Error as exc:
            self._failed("read", exc)
            return None
        try:
            return CachedAnswer.from_json(row[2])
        except ValueError:  # not an answer this version reads: the next finish overwrites it
            return None

    async def put(self, key: str, answer: CachedAnswer, ttl_s: float) -> None:
        now = self._clock()
        try:
            with write_transaction(self._db):
                self._db.execute(
                    "INSERT OR REPLACE INTO answers (key, expires_at, used_at, answer) "
                    "VALUES (?, ?, ?, ?)",
                    (key, now + ttl_s, now, answer.to_json()),
                )
                self._writes += 1
                if self._writes % TRIM_EVERY == 0:
                    self._trim(now)
        except sqlite3.Error as exc:
            self._failed("write", exc)

    def _trim(self, now: float) -> None:
        self._db.execute("DELETE FROM answers WHERE expires_at <= ?", (now,))
        self._db.execute(
            "DELETE FROM answers WHERE key IN "
            "(SELECT key FROM answers ORDER BY used_at DESC LIMIT -1 OFFSET ?)",
            (self.max_entries,),
        )

    def __len__(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM answers").fetchone()[0])

    def _failed(self, what: str, exc: sqlite3.Error) -> None:
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_S:
            self._logged_at = now
            log.warning("the shared response cache at %s: could not %s: %s", self.path, what, exc)

    async def close(self) -> None:
        self._db.close()
