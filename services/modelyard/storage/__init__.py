"""Where the registry, the hot-swap service, the gateway and the audit log keep their tables.

One interface (`Database`) over two engines: an SQLite file under the data
directory (the embedded default) or a PostgreSQL server that several
processes share (`MODELYARD_DATABASE_URL` / ``server.database_url``). A store
states its tables once, as ordered migrations in SQLite's SQL (`StoreSchema`);
`open_store` opens its database and applies the migrations it lacks.
`postgres_sql` is the one place that SQL is translated for PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path

from modelyard.storage.database import Database, Row
from modelyard.storage.migrations import StoreSchema, migrate
from modelyard.storage.url import DATABASE_URL_ENV, DatabaseUrl

__all__ = [
    "DATABASE_URL_ENV",
    "Database",
    "DatabaseUrl",
    "Row",
    "StoreSchema",
    "open_store",
]


def open_store(where: Path | DatabaseUrl, schema: StoreSchema) -> Database:
    """The store's database, migrated: the SQLite file at `where`, or its own namespace
    (`schema.name`) on the PostgreSQL server `where` names."""
    db: Database
    if isinstance(where, DatabaseUrl):
        from modelyard.storage.postgres import PostgresDatabase  # psycopg only when asked for

        db = PostgresDatabase(where, schema.name)
    else:
        from modelyard.storage.sqlite import SqliteDatabase

        db = SqliteDatabase(where)
    try:
        migrate(db, schema)
    except BaseException:
        db.close()
        raise
    return db
