"""The authenticator: a presented key becomes a principal, or one refusal for every bad case.

Over a real key store (SQLite in the test's directory) and a clock the test moves.
"""

from __future__ import annotations

import contextlib
import logging
import statistics
import time
from pathlib import Path

import pytest

from modelyard.config import parse_config
from modelyard.config.security import AuthConfig
from modelyard.security.auth_mode import (
    BOOTSTRAP_ADMIN,
    SERVICE,
    auth_from_env,
    auth_required,
    is_loopback,
    keys_required,
)
from modelyard.security.authn import REFUSED, Authenticator
from modelyard.security.keys import KeyDigester, KeySpec, KeyStore
from modelyard.security.principal import ADMIN, BACKEND, GENERATE
from modelyard_client.errors import InvalidRequest, PermissionDenied, Unauthenticated

SECRET = b"0123456789abcdef0123456789abcdef"
ADMIN_KEY = "admin-key-for-tests-0001"
SERVICE_KEY = "service-key-for-tests-0001"


class Clock:
    def __init__(self) -> None:
        self.at = 1_000_000.0

    def __call__(self) -> float:
        return self.at


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> KeyStore:
    return KeyStore(tmp_path / "keys.sqlite3", KeyDigester(SECRET), now=clock)


@pytest.fixture
def authn(store: KeyStore, clock: Clock) -> Authenticator:
    fixed = [(ADMIN_KEY, BOOTSTRAP_ADMIN), (SERVICE_KEY, SERVICE)]
    return Authenticator(KeyDigester(SECRET), store, fixed, now=clock)


def _refusal(authn: Authenticator, key: str | None) -> Unauthenticated:
    with pytest.raises(Unauthenticated) as refused:
        authn.authenticate(key)
    return refused.value


def test_a_stored_key_authenticates_as_its_principal(authn: Authenticator, store: KeyStore) -> None:
    record, secret = store.create(KeySpec(owner="ana", models=("custom/model-a",)))
    authn.refresh()
    assert authn.authenticate(secret) == record.principal()


def test_the_fixed_keys_are_the_bootstrap_admin_and_the_service(authn: Authenticator) -> None:
    assert authn.authenticate(ADMIN_KEY).scopes == frozenset({ADMIN})
    assert authn.authenticate(SERVICE_KEY).scopes == frozenset({BACKEND})
    assert authn.authenticate(SERVICE_KEY).key_id == "service"


def test_unknown_expired_revoked_and_missing_keys_get_the_same_refusal(
    authn: Authenticator, store: KeyStore, clock: Clock
) -> None:
    _, expired = store.create(KeySpec(owner="a", expires_at=clock.at + 5))
    revoked_record, revoked = store.create(KeySpec(owner="b"))
    store.revoke(revoked_record.id)
    authn.refresh()
    clock.at += 5  # the expiry itself no longer works
    refusals = [_refusal(authn, key) for key in ("myk_unknown", expired, revoked, None, "")]
    assert {(type(r), r.code, r.message) for r in refusals} == {
        (Unauthenticated, Unauthenticated.code, REFUSED)
    }


def test_unknown_expired_and_revoked_keys_are_refused_in_the_same_time(
    authn: Authenticator, store: KeyStore, clock: Clock
) -> None:
    """Interleaved, so machine load hits each case alike; medians within 35 %."""
    _, expired = store.create(KeySpec(owner="a", expires_at=clock.at + 1))
    record, revoked = store.create(KeySpec(owner="b"))
    store.revoke(record.id)
    authn.refresh()
    clock.at += 2
    cases = {"unknown": "myk_" + "x" * 43, "expired": expired, "revoked": revoked}
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(3000):
        for name, key in cases.items():
            started = time.perf_counter_ns()
            with contextlib.suppress(Unauthenticated):
                authn.authenticate(key)
            times[name].append(time.perf_counter_ns() - started)
    medians = {name: statistics.median(t) for name, t in times.items()}
    assert max(medians.values()) <= 1.35 * min(medians.values()), medians


def test_a_rotated_key_works_for_its_grace_then_only_the_new_one(
    authn: Authenticator, store: KeyStore, clock: Clock
) -> None:
    record, old = store.create(KeySpec(owner="ana"))
    _, new = store.rotate(record.id, 30)
    authn.refresh()
    assert authn.authenticate(old).key_id == record.id
    assert authn.authenticate(new).key_id == record.id
    clock.at += 30
    assert _refusal(authn, old).message == REFUSED
    assert authn.authenticate(new).key_id == record.id


def test_refresh_reloads_only_when_the_revision_moved(
    authn: Authenticator, store: KeyStore
) -> None:
    assert authn.refresh() is False
    record, secret = store.create(KeySpec(owner="ana"))
    assert _refusal(authn, secret)  # not seen before the refresh
    assert authn.refresh() is True
    assert authn.authenticate(secret).key_id == record.id
    store.revoke(record.id)
    assert authn.refresh() is True
    assert _refusal(authn, secret).message == REFUSED


def test_admit_checks_the_rpc_scope(authn: Authenticator, store: KeyStore) -> None:
    _, secret = store.create(KeySpec(owner="ana", scopes=(GENERATE,)))
    authn.refresh()
    assert authn.admit(secret, "modelyard.v1.GatewayService/Generate").owner == "ana"
    with pytest.raises(PermissionDenied, match="needs the admin or backend scope"):
        authn.admit(secret, "modelyard.v1.RegistryService/RegisterModel")


@pytest.mark.parametrize(
    ("listen", "loopback"),
    [
        ("127.0.0.1:50051", True),
        ("127.8.0.1:1", True),
        ("localhost:50051", True),
        ("[::1]:50051", True),
        ("0.0.0.0:50051", False),
        ("[::]:50051", False),
        ("10.1.2.3:50051", False),
        ("gateway:50051", False),
        (":50051", False),
    ],
)
def test_loopback_is_told_by_the_address(listen: str, loopback: bool) -> None:
    assert is_loopback(listen) is loopback


def test_loopback_stays_open_and_says_so_in_one_info_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, "modelyard.security.auth_mode"):
        assert auth_required(AuthConfig(), "127.0.0.1:50051") is False
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "INFO",
            "API keys are not required: 127.0.0.1:50051 is loopback only (security.auth.required)",
        )
    ]


def test_beyond_loopback_keys_are_required() -> None:
    assert auth_required(AuthConfig(), "0.0.0.0:50051") is True
    assert auth_required(AuthConfig(required=True), "127.0.0.1:50051") is True


def test_the_opt_out_beyond_loopback_is_a_loud_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, "modelyard.security.auth_mode"):
        assert auth_required(AuthConfig(allow_unauthenticated=True), "0.0.0.0:7") is False
    (record,) = caplog.records
    assert record.levelname == "WARNING"
    assert record.getMessage().startswith("AUTHENTICATION IS OFF on 0.0.0.0:7")


def test_required_keys_without_a_service_key_stop_the_start() -> None:
    with pytest.raises(InvalidRequest, match="set MODELYARD_SERVICE_KEY"):
        keys_required(AuthConfig(admin_key=ADMIN_KEY), "0.0.0.0:1")


def test_the_admin_and_service_keys_must_differ() -> None:
    same = AuthConfig(admin_key=ADMIN_KEY, service_key=ADMIN_KEY)
    with pytest.raises(InvalidRequest, match="must differ"):
        keys_required(same, "0.0.0.0:1")


def test_the_secrets_come_from_the_environment_when_the_file_has_none() -> None:
    env = {
        "MODELYARD_ADMIN_KEY": ADMIN_KEY,
        "MODELYARD_SERVICE_KEY": SERVICE_KEY,
        "MODELYARD_KEY_SECRET": "s" * 32,
    }
    auth = auth_from_env(parse_config("model_system: {}", env={}), env).security.auth
    assert (auth.admin_key, auth.service_key, auth.key_secret) == (ADMIN_KEY, SERVICE_KEY, "s" * 32)
    text = "model_system: {security: {auth: {admin_key: '${MINE}'}}}"
    config = parse_config(text, env={"MINE": "from-the-file-var"})
    assert auth_from_env(config, env).security.auth.admin_key == "from-the-file-var"


def test_a_key_pasted_into_the_file_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="put secrets in the environment"):
        parse_config("model_system: {security: {auth: {admin_key: myk_pasted}}}", env={})


def test_the_secrets_never_show_in_the_config_repr() -> None:
    config = parse_config(
        "model_system: {security: {auth: {admin_key: '${A}', service_key: '${S}'}}}",
        env={"A": ADMIN_KEY, "S": SERVICE_KEY},
    )
    assert ADMIN_KEY not in repr(config) and SERVICE_KEY not in repr(config)


def test_the_service_key_travels_in_the_header_the_server_reads_first() -> None:
    from modelyard.ratelimit import caller
    from modelyard_client.channel import API_KEY_HEADER

    both = [("authorization", "Bearer other"), (API_KEY_HEADER, "mine")]
    assert caller.api_key_from_metadata(both) == "mine"


def test_compose_gives_every_service_the_service_and_admin_keys() -> None:
    """The compose services listen on 0.0.0.0: keys are required, so each needs both."""
    import yaml

    root = Path(__file__).parents[2]
    compose = yaml.safe_load((root / "docker-compose.yml").read_text())
    served = [s for s in compose["services"].values() if s.get("command", [""])[0] == "serve"]
    assert len(served) >= 6
    for service in served:
        env = service["environment"]
        assert env["MODELYARD_SERVICE_KEY"].startswith("${MODELYARD_SERVICE_KEY:?")
        assert env["MODELYARD_ADMIN_KEY"].startswith("${MODELYARD_ADMIN_KEY:?")
    assert "gateway-data:/data" in compose["services"]["gateway"]["volumes"]
