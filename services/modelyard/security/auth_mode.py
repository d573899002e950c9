"""When keys are required, where the fixed keys come from, and the authenticator a server uses.

Keys are required whenever a server listens beyond loopback, unless the
configuration opts out (`security.auth.allow_unauthenticated`, logged as a
WARNING at every start); on loopback (the embedded default) only with
`security.auth.required`, and an open loopback server says so in one INFO line.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelyard.config import ModelyardConfig
from modelyard.config.security import AuthConfig
from modelyard.security.authn import Authenticator
from modelyard.security.keys import KeyDigester, KeyStore, server_secret
from modelyard.security.principal import ADMIN, BACKEND, Principal
from modelyard_client.errors import InvalidRequest

log = logging.getLogger(__name__)

ADMIN_KEY_ENV = "MODELYARD_ADMIN_KEY"
SERVICE_KEY_ENV = "MODELYARD_SERVICE_KEY"
KEY_SECRET_ENV = "MODELYARD_KEY_SECRET"
KEY_STORE_FILE = "keys.sqlite3"

# The key ids of the configuration's fixed keys (never the keys).
BOOTSTRAP_ADMIN = Principal(key_id="bootstrap-admin", owner="operator", scopes=frozenset({ADMIN}))
SERVICE = Principal(key_id="service", owner="modelyard", scopes=frozenset({BACKEND}))


def auth_from_env(config: ModelyardConfig, env: Mapping[str, str]) -> ModelyardConfig:
    """`config` with each secret of `security.auth` the file left out taken from its
    environment variable (MODELYARD_ADMIN_KEY, MODELYARD_SERVICE_KEY, MODELYARD_KEY_SECRET)."""
    auth = config.security.auth
    given: dict[str, Any] = {
        name: env[var]
        for name, var in (
            ("admin_key", ADMIN_KEY_ENV),
            ("service_key", SERVICE_KEY_ENV),
            ("key_secret", KEY_SECRET_ENV),
        )
        if getattr(auth, name) is None and env.get(var)
    }
    if not given:
        return config
    security = dataclasses.replace(config.security, auth=dataclasses.replace(auth, **given))
    return dataclasses.replace(config, security=security)


def is_loopback(listen: str) -> bool:
    """Whether `listen` ("host:port") binds only this machine."""
    host = listen.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name, or "" (every address)


def auth_required(auth: AuthConfig, listen: str) -> bool:
    """Whether this server requires keys, logged once: a WARNING when it listens beyond
    loopback without them, one INFO line when it is an open loopback server."""
    loopback = is_loopback(listen)
    if auth.required or (not loopback and not auth.allow_unauthenticated):
        log.info("API keys are required on %s", listen)
        return True
    if not loopback:
        log.warning(
            "AUTHENTICATION IS OFF on %s, which is reachable beyond this machine "
            "(security.auth.allow_unauthenticated: true): anyone who reaches the port can "
            "register models, swap routes and read every prompt",
            listen,
        )
    else:
        log.info("API keys are not required: %s is loopback only (security.auth.required)", listen)
    return False


def key_store_path(auth: AuthConfig, data_dir: Path) -> Path:
    return auth.store or data_dir / KEY_STORE_FILE


def keys_required(auth: AuthConfig, listen: str) -> bool:
    """Whether a server on `listen` requires keys (`auth_required`), checked for start:
    keys required without a service key is a start-up error, as the services could
    not call each other (`InvalidRequest`, naming the variable)."""
    if not auth_required(auth, listen):
        return False
    if not auth.service_key:
        raise InvalidRequest(
            f"API keys are required on {listen}, so the services need a key to call each "
            f"other: set {SERVICE_KEY_ENV} (security.auth.service_key), the same in every "
            "modelyard process"
        )
    if auth.admin_key and auth.admin_key == auth.service_key:
        raise InvalidRequest(f"{ADMIN_KEY_ENV} and {SERVICE_KEY_ENV} must differ")
    return True


def open_authenticator(auth: AuthConfig, data_dir: Path, required: bool = True) -> Authenticator:
    """The store's keys plus the configuration's fixed keys, under the server secret.

    `required` False: for the KeyService of an open server (keys made ahead of
    requiring them); nothing is authenticated with it.
    """
    path = key_store_path(auth, data_dir)
    digester = KeyDigester(server_secret(auth.key_secret, path))
    store = KeyStore(path, digester)
    fixed = [(auth.admin_key or "", BOOTSTRAP_ADMIN), (auth.service_key or "", SERVICE)]
    if required and not auth.admin_key and not store.list():
        log.warning(
            "API keys are required but there is no key yet: set %s (security.auth.admin_key) "
            "to create some with `modelyard keys create`",
            ADMIN_KEY_ENV,
        )
    return Authenticator(digester, store, fixed, redis_url=auth.redis_url)
