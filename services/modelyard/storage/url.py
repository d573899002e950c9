"""`DatabaseUrl`: the PostgreSQL server the stores share, and how it is named in messages.

Given as ``MODELYARD_DATABASE_URL`` or ``server.database_url``
(``postgresql://USER:PASSWORD@HOST:PORT/DATABASE``, libpq's URI; query
parameters such as ``sslmode`` pass through). Its password is registered with
`scrub`, and `redacted` (also its `str`) is the URL with the password replaced,
the only form any message or log shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from modelyard_client.errors import InvalidRequest
from modelyard_client.scrub import MARKER, register_secret

DATABASE_URL_ENV = "MODELYARD_DATABASE_URL"
SCHEMES = ("postgresql", "postgres")
SOURCES = f"{DATABASE_URL_ENV} / server.database_url"


def database_url_problem(text: str) -> str | None:
    """What is wrong with `text` as a database URL (password not shown); None: nothing."""
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 (a port that is no number raises here)
    except ValueError as exc:
        return f"'{_redact(text)}' is not a URL ({exc})"
    if parts.scheme not in SCHEMES:
        return (
            f"'{_redact(text)}' is not a PostgreSQL URL "
            "(postgresql://USER:PASSWORD@HOST:PORT/DATABASE)"
        )
    if not parts.path.strip("/"):
        return f"'{_redact(text)}' names no database (postgresql://USER@HOST:PORT/DATABASE)"
    return None


@dataclass(frozen=True)
class DatabaseUrl:
    url: str = field(repr=False)

    @classmethod
    def parse(cls, text: str) -> DatabaseUrl:
        """`text` checked; a mistake raises `InvalidRequest` naming where it was given."""
        problem = database_url_problem(text.strip())
        if problem is not None:
            raise InvalidRequest(f"{SOURCES}: {problem}", field="server.database_url")
        made = cls(text.strip())
        password = urlsplit(made.url).password
        if password:
            register_secret(password)
        return made

    @property
    def redacted(self) -> str:
        return _redact(self.url)

    def __str__(self) -> str:
        return self.redacted

    def __repr__(self) -> str:
        return f"DatabaseUrl({self.redacted!r})"


def _redact(text: str) -> str:
    try:
        parts = urlsplit(text)
        password = parts.password
    except ValueError:
        return MARKER
    if not password:
        return text
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{MARKER}@{host}"))
