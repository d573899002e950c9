"""Provider keys in memory, re-read without a restart.

A secret field of the configuration names a variable (``api_key:
"${OPENAI_API_KEY}"``, `SecretsConfig.references`); `ProviderKeys` holds the
current value of each such variable, read from the secrets file
(`security.secrets.file`, winning) or else the environment, and nowhere else:
never in the registry, a cache, Redis, a log or a metric. `reload` (SIGHUP,
`modelyard.server.runtime.on_reload_signal`) reads both again; an engine
holds a `ProviderKey`, which it asks for the value on each call, so a rotated
key is used from the next call on while calls in flight finish with the old.

Every value read, the old ones of a rotation included, is registered with the
scrubber (`modelyard_client.scrub.register_secret`), so no error, log or span shows
it. A reload that cannot read the file keeps every key as it was and logs why;
a variable that has disappeared keeps its last value (a key is never blanked
by a half-written file), which is logged too.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelyard.config import ModelyardConfig
from modelyard.config.convert import Secret
from modelyard.config.secrets_file import read_secrets_file
from modelyard_client.errors import ConfigError
from modelyard_client.scrub import register_secret

log = logging.getLogger(__name__)


class ProviderKeys:
    """The current value of every secret variable the configuration references."""

    def __init__(
        self,
        names: frozenset[str],
        file: Path | None = None,
        env: Mapping[str, str] | None = None,
        given: Mapping[str, str] | None = None,
    ) -> None:
        """`names`: the variables to hold; `file`: the secrets file; `env` (default
        `os.environ`, read again on each reload); `given`: values already resolved (the
        configuration's), used for a variable neither source holds."""
        self._names = names
        self._file = file
        self._env = env
        self._values: dict[str, str] = {}
        self.generation = 0  # how many reloads changed a value
        for value in (given or {}).values():
            register_secret(value)
        self._values = {n: v for n, v in (given or {}).items() if n in names}
        self._read(initial=True)

    @classmethod
    def for_config(
        cls, config: ModelyardConfig, env: Mapping[str, str] | None = None
    ) -> ProviderKeys:
        """The keys `config`'s secret fields reference, seeded with the values it resolved."""
        for value in configured_secrets(config):
            register_secret(value)  # also those not read through a reference (auth_from_env)
        secrets = config.security.secrets
        given: dict[str, str] = {}
        for path, name in secrets.references.items():
            value = _value_at(config, path)
            if value:
                given[name] = value
        return cls(frozenset(secrets.references.values()), secrets.file, env, given)

    def get(self, name: str) -> str:
        """The current value of variable `name` ("" when none is known)."""
        return self._values.get(name, "")

    def key(self, name: str) -> ProviderKey:
        """A handle on variable `name` an engine asks on each call."""
        return ProviderKey(self, name)

    def reload(self) -> bool:
        """Read the file and the environment again; True when a value changed.

        Never raises for a broken file: the keys stay as they were and the
        problem is logged (without any value).
        """
        try:
            return self._read(initial=False)
        except ConfigError as exc:
            log.error("secrets not reloaded, every key kept as it was: %s", exc.message)
            return False

    def _read(self, *, initial: bool) -> bool:
        env = os.environ if self._env is None else self._env
        from_file = read_secrets_file(self._file) if self._file is not None else {}
        for value in from_file.values():
            register_secret(value)  # every value in the file is a secret, used or not
        changed: list[str] = []
        values = dict(self._values)
        for name in sorted(self._names):
            if initial and name in values:
                continue  # at start the configuration's resolved value is the one in use
            value = from_file.get(name) or env.get(name, "")
            if not value:
                if name in values and not initial:
                    log.warning(
                        "secret %s is no longer in the secrets file or the environment; "
                        "its last value stays in use",
                        name,
                    )
                continue
            register_secret(value)
            if values.get(name) != value:
                changed.append(name)
                values[name] = value
        self._values = values  # one assignment: a call reads the old or the new dict
        if changed and not initial:
            self.generation += 1
            log.info("secrets reloaded: %s changed", ", ".join(changed))
        elif not initial:
            log.info("secrets reloaded: no value changed")
        return bool(changed) and not initial


@dataclass(frozen=True)
class ProviderKey:
    """One variable's value as it is now: what an engine sends on its next call."""

    keys: ProviderKeys
    name: str

    def value(self) -> str:
        return self.keys.get(self.name)

    def __repr__(self) -> str:  # never the value
        return f"ProviderKey({self.name!r})"


def configured_secrets(node: object) -> Iterator[str]:
    """The value of every secret field (`Annotated[str, Secret()]`) set in `node`, a
    configuration dataclass, and in every dataclass and mapping below it."""
    if isinstance(node, Mapping):
        for value in node.values():
            yield from configured_secrets(value)
        return
    if not dataclasses.is_dataclass(node) or isinstance(node, type):
        return
    hints = _hints(type(node))
    for f in dataclasses.fields(node):
        value = getattr(node, f.name, None)
        if isinstance(value, str):
            if value and _is_secret(hints.get(f.name)):
                yield value
        elif value is not None:
            yield from configured_secrets(value)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def _is_secret(hint: Any) -> bool:
    """Whether a field's type carries the `Secret` marker (inside an Optional too)."""
    if typing.get_origin(hint) is typing.Annotated:
        return any(isinstance(m, Secret) for m in typing.get_args(hint)[1:])
    return any(_is_secret(arg) for arg in typing.get_args(hint))


def _value_at(config: ModelyardConfig, path: str) -> str:
    """The resolved value of the secret field at key path `path` ("" when unset)."""
    node: object = config
    for part in path.split("."):
        node = node.get(part) if isinstance(node, Mapping) else getattr(node, part, None)
        if node is None:
            return ""
    return node if isinstance(node, str) else ""
