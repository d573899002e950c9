"""Gateway API keys ("virtual keys"): issued, listed, rotated and revoked, stored as HMACs.

A key's secret is shown once, when it is issued (`create`, `rotate`); the store
keeps only ``HMAC-SHA256(server secret, key)`` (`KeyDigester`), so the SQLite
file, a backup of it or a replica's copy gives nobody a usable key. The server
secret comes from the configuration's environment variable, else from a file
beside the store that the first server creates with mode 0600: replicas
sharing the store share it.

Every write bumps one revision counter in the same transaction; each server
polls it (`modelyard.security.authn.Authenticator`) and reloads the keys when
it moves, so a revocation reaches every replica sharing the store.

The store is SQLite (`modelyard.sqlite_files`) even when `MODELYARD_DATABASE_URL`
puts the registry, hot-swap and conversation stores on PostgreSQL
(`modelyard.storage`): replicas share the file (`security.auth.store`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from modelyard.security.principal import GENERATE, SCOPES, Principal
from modelyard.sqlite_files import open_database, write_transaction
from modelyard_client.errors import InvalidRequest, NotFound

log = logging.getLogger(__name__)

# What an issued key starts with: lets a scanner (and a person) tell a modelyard key.
KEY_PREFIX = "myk_"
SECRET_FILE = "key-secret"
MAX_TEXT = 256  # owner, team, a model name
MAX_MODELS = 256

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    digest BLOB NOT NULL UNIQUE,
    previous_digest BLOB,
    previous_valid_until REAL,
    owner TEXT NOT NULL,
    team TEXT NOT NULL,
    scopes TEXT NOT NULL,
    models TEXT NOT NULL,
    expires_at REAL,
    requests_per_minute REAL,
    tokens_per_minute REAL,
    daily_budget_usd REAL,
    monthly_budget_usd REAL,
    created_at REAL NOT NULL,
    rotated_at REAL,
    revoked_at REAL
);
CREATE TABLE IF NOT EXISTS key_revision (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    revision INTEGER NOT NULL
);
INSERT OR IGNORE INTO key_revision VALUES (1, 0);
"""

_COLUMNS = (
    "id, digest, previous_digest, previous_valid_until, owner, team, scopes, models, "
    "expires_at, requests_per_minute, tokens_per_minute, daily_budget_usd, "
    "monthly_budget_usd, created_at, rotated_at, revoked_at"
)


class KeyDigester:
    """The one way a presented key becomes what the store holds: HMAC-SHA256 under the
    server secret. Every key presented is hashed, found or not (`authn`)."""

    def __init__(self, server_secret: bytes) -> None:
        if len(server_secret) < 16:
            raise InvalidRequest("security.auth.key_secret must be at least 16 bytes")
        self._secret = server_secret

    def digest(self, key: str) -> bytes:
        return hmac.new(self._secret, key.encode("utf-8", "replace"), hashlib.sha256).digest()


def server_secret(configured: str | None, store_path: Path) -> bytes:
    """The HMAC secret: the configured one, else the file beside the store (made on first
    start with mode 0600, 32 random bytes as hex). Never logged."""
    if configured:
        return configured.encode()
    path = store_path.parent / SECRET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_secret_file(path)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(32))
    log.info("wrote a new key secret to %s (mode 0600)", path)
    return _read_secret_file(path)


def _read_secret_file(path: Path) -> bytes:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("%s is readable by others (mode %o); make it 0600", path, mode)
    # Another replica may have created it a moment ago and not written it yet.
    for _ in range(50):
        text = path.read_text().strip()
        if text:
            return text.encode()
        time.sleep(0.02)
    raise InvalidRequest(f"{path} is empty; delete it to have a new key secret made")


@dataclass(frozen=True, slots=True)
class KeySpec:
    """What a new key may do: its owner and team, scopes, models and own limits."""

    owner: str
    team: str = ""
    scopes: tuple[str, ...] = (GENERATE,)
    models: tuple[str, ...] = ()
    expires_at: float | None = None  # epoch seconds; None: never
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    daily_budget_usd: float | None = None
    monthly_budget_usd: float | None = None

    def check(self) -> None:
        """Raise `InvalidRequest` naming the first wrong field."""
        if not self.owner.strip():
            raise InvalidRequest("owner is required", field="owner")
        for name, text in (("owner", self.owner), ("team", self.team)):
            if len(text) > MAX_TEXT:
                raise InvalidRequest(f"{name} is over {MAX_TEXT} characters", field=name)
        unknown = sorted(set(self.scopes) - set(SCOPES))
        if unknown or not self.scopes:
            raise InvalidRequest(
                f"unknown scope(s) {unknown}; choose from {', '.join(SCOPES)}", field="scopes"
            )
        if len(self.models) > MAX_MODELS:
            raise InvalidRequest(f"more than {MAX_MODELS} models", field="models")
        for model in self.models:
            if not model.strip() or len(model) > MAX_TEXT:
                raise InvalidRequest(f"model name {model[:40]!r} is empty or too long", "models")
        for name in (
            "requests_per_minute",
            "tokens_per_minute",
            "daily_budget_usd",
            "monthly_budget_usd",
        ):
            value = getattr(self, name)
            if value is not None and not 0 < value < float("inf"):
                raise InvalidRequest(f"{name} must be > 0, got {value}", field=name)


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """One key as stored: its digests, never its secret."""

    id: str
    digest: bytes
    spec: KeySpec
    created_at: float
    previous_digest: bytes | None = None
    previous_valid_until: float | None = None
    rotated_at: float | None = None
    revoked_at: float | None = None

    def principal(self) -> Principal:
        spec = self.spec
        return Principal(
            key_id=self.id,
            owner=spec.owner,
            team=spec.team,
            scopes=frozenset(spec.scopes),
            models=frozenset(spec.models),
            requests_per_minute=spec.requests_per_minute,
            tokens_per_minute=spec.tokens_per_minute,
            daily_budget_usd=spec.daily_budget_usd,
            monthly_budget_usd=spec.monthly_budget_usd,
        )

    def digests(self) -> Iterable[tuple[bytes, float | None]]:
        """Each digest that may authenticate as this key, with until when (None: no end but
        the key's expiry). A revoked key has none."""
        if self.revoked_at is not None:
            return
        yield self.digest, self.spec.expires_at
        if self.previous_digest is not None and self.previous_valid_until is not None:
            until = self.previous_valid_until
            if self.spec.expires_at is not None:
                until = min(until, self.spec.expires_at)
            yield self.previous_digest, until


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


class KeyStore:
    """The keys in one SQLite file; every write bumps `revision` in its transaction."""

    def __init__(
        self, path: Path, digester: KeyDigester, now: Callable[[], float] = time.time
    ) -> None:
        self.path = path
        self._db = open_database(path, _SCHEMA)
        self._db.execute("PRAGMA busy_timeout=5000")  # replicas write the same file
        self._digester = digester
        self._now = now

    def close(self) -> None:
        self._db.close()

    def revision(self) -> int:
        row = self._db.execute("SELECT revision FROM key_revision").fetchone()
        return int(row[0])

    def create(self, spec: KeySpec) -> tuple[ApiKeyRecord, str]:
        """A new key: its record and its secret (shown once)."""
        spec.check()
        secret = new_secret()
        record = ApiKeyRecord(
            id="key_" + secrets.token_hex(8),
            digest=self._digester.digest(secret),
            spec=spec,
            created_at=self._now(),
        )
        with self._writing():
            self._db.execute(
                f"INSERT INTO api_keys ({_COLUMNS}) VALUES ({', '.join('?' * 16)})",
                _row(record),
            )
        return record, secret

    def get(self, key_id: str) -> ApiKeyRecord:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE id = ?", (key_id,))
        found = row.fetchone()
        if found is None:
            raise NotFound(f"no API key with id '{key_id[:64]}'")
        return _record(found)

    def list(self, include_revoked: bool = False) -> list[ApiKeyRecord]:
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at, id")
        records = [_record(row) for row in rows]
        return [r for r in records if include_revoked or r.revoked_at is None]

    def rotate(self, key_id: str, grace_s: float) -> tuple[ApiKeyRecord, str]:
        """A new secret for `key_id`; the old one works `grace_s` more seconds (0: none)."""
        if not 0 <= grace_s <= 30 * 86400:
            raise InvalidRequest(f"grace_s must be 0 to 30 days, got {grace_s}", field="grace_s")
        secret = new_secret()
        with self._writing():
            record = self._live(key_id)
            now = self._now()
            rotated = replace(
                record,
                digest=self._digester.digest(secret),
                previous_digest=record.digest if grace_s > 0 else None,
                previous_valid_until=now + grace_s if grace_s > 0 else None,
                rotated_at=now,
            )
            self._db.execute(
                "UPDATE api_keys SET digest = ?, previous_digest = ?, previous_valid_until = ?,"
                " rotated_at = ? WHERE id = ?",
                (
                    rotated.digest,
                    rotated.previous_digest,
                    rotated.previous_valid_until,
                    now,
                    key_id,
                ),
            )
        return rotated, secret

    def revoke(self, key_id: str) -> ApiKeyRecord:
        """Stop `key_id` now (and any secret a rotation left in grace)."""
        with self._writing():
            record = self._live(key_id)
            revoked = replace(record, revoked_at=self._now())
            self._db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ?", (revoked.revoked_at, key_id)
            )
        return revoked

    def _live(self, key_id: str) -> ApiKeyRecord:
        record = self.get(key_id)
        if record.revoked_at is not None:
            raise NotFound(f"API key '{key_id}' is revoked")
        return record

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """One write, and the revision every authenticator polls moved on with it."""
        with write_transaction(self._db):
            yield
            self._db.execute("UPDATE key_revision SET revision = revision + 1")


def _row(record: ApiKeyRecord) -> Sequence[object]:
    spec = record.spec
    return (
        record.id,
        record.digest,
        record.previous_digest,
        record.previous_valid_until,
        spec.owner,
        spec.team,
        json.dumps(list(spec.scopes)),
        json.dumps(list(spec.models)),
        spec.expires_at,
        spec.requests_per_minute,
        spec.tokens_per_minute,
        spec.daily_budget_usd,
        spec.monthly_budget_usd,
        record.created_at,
        record.rotated_at,
        record.revoked_at,
    )


def _record(row: Sequence[Any]) -> ApiKeyRecord:  # one row of _COLUMNS
    (key_id, digest, prev, prev_until, owner, team, scopes, models, *rest) = row
    expires, rpm, tpm, daily, monthly, created, rotated, revoked = rest
    spec = KeySpec(
        owner=str(owner),
        team=str(team),
        scopes=tuple(json.loads(str(scopes))),
        models=tuple(json.loads(str(models))),
        expires_at=_real(expires),
        requests_per_minute=_real(rpm),
        tokens_per_minute=_real(tpm),
        daily_budget_usd=_real(daily),
        monthly_budget_usd=_real(monthly),
    )
    return ApiKeyRecord(
        id=str(key_id),
        digest=bytes(digest),
        spec=spec,
        created_at=float(created),
        previous_digest=bytes(prev) if prev is not None else None,
        previous_valid_until=_real(prev_until),
        rotated_at=_real(rotated),
        revoked_at=_real(revoked),
    )


def _real(value: Any) -> float | None:
    return None if value is None else float(value)
