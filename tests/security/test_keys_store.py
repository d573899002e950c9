"""The key store: keys issued once, kept only as HMACs, rotated with a grace, revoked.

A real SQLite file in the test's directory; the clock is a list the test moves.
"""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from modelyard.security.keys import (
    KEY_PREFIX,
    SECRET_FILE,
    KeyDigester,
    KeySpec,
    KeyStore,
    server_secret,
)
from modelyard.security.principal import ADMIN, GENERATE
from modelyard_client.errors import InvalidRequest, NotFound

SECRET = b"0123456789abcdef0123456789abcdef"


class Clock:
    def __init__(self, at: float = 1_000_000.0) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> KeyStore:
    return KeyStore(tmp_path / "keys.sqlite3", KeyDigester(SECRET), now=clock)


def test_a_created_key_is_stored_as_its_hmac_and_its_principal_carries_its_limits(
    store: KeyStore,
) -> None:
    spec = KeySpec(
        owner="ana",
        team="search",
        scopes=(GENERATE,),
        models=("custom/model-a", "chat"),
        requests_per_minute=60.0,
        tokens_per_minute=6000.0,
        daily_budget_usd=5.0,
        monthly_budget_usd=100.0,
    )
    record, secret = store.create(spec)
    assert secret.startswith(KEY_PREFIX) and len(secret) > 40
    assert record.digest == KeyDigester(SECRET).digest(secret)
    assert store.get(record.id) == record
    principal = record.principal()
    assert principal.key_id == record.id and principal.key_id.startswith("key_")
    assert (principal.owner, principal.team) == ("ana", "search")
    assert principal.scopes == frozenset({GENERATE})
    assert principal.models == frozenset({"custom/model-a", "chat"})
    assert (principal.requests_per_minute, principal.tokens_per_minute) == (60.0, 6000.0)
    assert (principal.daily_budget_usd, principal.monthly_budget_usd) == (5.0, 100.0)


def test_every_write_bumps_the_revision(store: KeyStore) -> None:
    assert store.revision() == 0
    record, _ = store.create(KeySpec(owner="ana"))
    assert store.revision() == 1
    store.rotate(record.id, 0)
    assert store.revision() == 2
    store.revoke(record.id)
    assert store.revision() == 3


def test_a_rotated_key_keeps_its_old_digest_until_the_grace_ends(
    store: KeyStore, clock: Clock
) -> None:
    record, old = store.create(KeySpec(owner="ana"))
    rotated, new = store.rotate(record.id, 60)
    assert new != old
    digester = KeyDigester(SECRET)
    assert list(rotated.digests()) == [
        (digester.digest(new), None),
        (digester.digest(old), clock.at + 60),
    ]
    assert rotated.rotated_at == clock.at


def test_a_rotation_without_grace_drops_the_old_digest(store: KeyStore) -> None:
    record, _ = store.create(KeySpec(owner="ana"))
    rotated, new = store.rotate(record.id, 0)
    assert list(rotated.digests()) == [(KeyDigester(SECRET).digest(new), None)]


def test_the_grace_of_a_rotation_never_outlives_the_key(store: KeyStore, clock: Clock) -> None:
    record, _ = store.create(KeySpec(owner="ana", expires_at=clock.at + 10))
    rotated, _ = store.rotate(record.id, 3600)
    assert [until for _, until in rotated.digests()] == [clock.at + 10, clock.at + 10]


def test_a_revoked_key_has_no_digest_and_is_listed_only_when_asked(store: KeyStore) -> None:
    record, _ = store.create(KeySpec(owner="ana"))
    kept, _ = store.create(KeySpec(owner="bo"))
    revoked = store.revoke(record.id)
    assert list(revoked.digests()) == []
    assert [r.id for r in store.list()] == [kept.id]
    assert {r.id for r in store.list(include_revoked=True)} == {record.id, kept.id}
    with pytest.raises(NotFound, match="is revoked"):
        store.rotate(record.id, 0)


def test_an_unknown_id_is_not_found(store: KeyStore) -> None:
    with pytest.raises(NotFound, match="no API key with id 'key_nope'"):
        store.revoke("key_nope")


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (KeySpec(owner=" "), "owner"),
        (KeySpec(owner="a", scopes=("root",)), "scopes"),
        (KeySpec(owner="a", scopes=()), "scopes"),
        (KeySpec(owner="a", models=("",)), "models"),
        (KeySpec(owner="a", requests_per_minute=-1.0), "requests_per_minute"),
        (KeySpec(owner="a", daily_budget_usd=float("nan")), "daily_budget_usd"),
        (KeySpec(owner="a" * 257), "owner"),
    ],
)
def test_a_wrong_spec_is_refused_naming_its_field(
    store: KeyStore, spec: KeySpec, field: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        store.create(spec)
    assert refused.value.field == field
    assert store.revision() == 0  # nothing written


def test_a_grace_beyond_thirty_days_is_refused(store: KeyStore) -> None:
    record, _ = store.create(KeySpec(owner="ana"))
    with pytest.raises(InvalidRequest, match="grace_s must be 0 to 30 days"):
        store.rotate(record.id, 31 * 86400)


def test_the_store_file_never_holds_a_key_in_plain_text_or_base64(
    tmp_path: Path, store: KeyStore
) -> None:
    issued = []
    for owner in ("ana", "bo", "cy"):
        record, secret = store.create(KeySpec(owner=owner, scopes=(ADMIN,)))
        issued.append(secret)
        _, rotated = store.rotate(record.id, 30)
        issued.append(rotated)
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("keys.sqlite3*"))  # the WAL too
    assert len(raw) > 4096
    for secret in issued:
        for form in _encodings(secret):
            assert form not in raw, f"{form!r} found in the store"


def _encodings(secret: str) -> list[bytes]:
    text = secret.encode()
    bare = text.removeprefix(KEY_PREFIX.encode())
    return [
        text,
        bare,
        base64.b64encode(text),
        base64.urlsafe_b64encode(text),
        base64.b64encode(bare),
        text.hex().encode(),
    ]


def test_the_server_secret_file_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    store_path = tmp_path / "data" / "keys.sqlite3"
    first = server_secret(None, store_path)
    path = tmp_path / "data" / SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) == 64  # 32 random bytes as hex
    assert server_secret(None, store_path) == first
    assert server_secret("from-the-environment-1234", store_path) == b"from-the-environment-1234"


def test_a_short_server_secret_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="at least 16 bytes"):
        KeyDigester(b"short")


def test_two_servers_sharing_a_store_share_its_secret(tmp_path: Path) -> None:
    path = tmp_path / "shared" / "keys.sqlite3"
    one = KeyStore(path, KeyDigester(server_secret(None, path)))
    record, secret = one.create(KeySpec(owner="ana"))
    two_digester = KeyDigester(server_secret(None, path))
    assert two_digester.digest(secret) == record.digest
    assert os.path.exists(path)
