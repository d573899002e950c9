"""Each store's schema as ordered migrations, applied on open, recorded in the database.

A store's `StoreSchema.migrations` are SQLite SQL scripts (or, where the
dialect has no translation, `PerEngine` statements), the first the
tables as they were before migrations were kept (``CREATE TABLE IF NOT
EXISTS``: a file made then opens unchanged, its rows kept, and is recorded at
version 1). Later changes are appended, never edited. `migrate` applies the
missing ones in order and records each in ``schema_migrations``, all in one
write transaction (on PostgreSQL under the store's advisory lock): processes
starting at once apply each migration once, the others wait and find it done.
A database recorded at a version this code does not know (a newer modelyard
wrote it) is refused rather than misread.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from modelyard.storage.database import Database
from modelyard.storage.dialect import PerEngine, statements
from modelyard_client.errors import FailedPrecondition

_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    applied_at_unix_s REAL NOT NULL
)
"""


@dataclass(frozen=True)
class StoreSchema:
    name: str  # the store: its PostgreSQL schema and write lock ("registry", "hotswap", ...)
    migrations: tuple[str | PerEngine, ...]  # version n is migrations[n - 1]


def migrate(db: Database, schema: StoreSchema) -> list[int]:
    """Apply the migrations `db` lacks; the versions applied now, in order."""
    applied = []
    with db.write():
        db.execute(_LEDGER)
        done = {int(v) for (v,) in db.execute("SELECT version FROM schema_migrations")}
        known = len(schema.migrations)
        if done and max(done) > known:
            raise FailedPrecondition(
                f"the {schema.name} store is at schema version {max(done)}; this modelyard "
                f"knows versions up to {known} (a newer modelyard wrote it)"
            )
        for version, script in enumerate(schema.migrations, start=1):
            if version in done:
                continue
            if isinstance(script, PerEngine):
                db.execute_own(script)
            else:
                for statement in statements(script):
                    db.execute(statement)
            db.execute(
                "INSERT INTO schema_migrations (version, applied_at_unix_s) VALUES (?, ?)",
                (version, time.time()),
            )
            applied.append(version)
    return applied
