"""Hosted API providers' models, from the maintained list in ``data/api_models.yaml``
(read by `modelyard.hosted_catalog`).

Only providers with a configured key are listed. One source for
all of them: a provider whose key is removed drops out of the next snapshot,
and its models are then no longer offered.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from modelyard.catalog_ids import catalog_id
from modelyard.discovery.source import SourceSnapshot
from modelyard.hosted_catalog import ApiCatalog, load_catalog
from modelyard_client.v1 import common_pb2


def enabled_from_env(
    env: Mapping[str, str] | None = None, catalog: ApiCatalog | None = None
) -> dict[str, str]:
    """Providers whose key variable is set in `env`, with the key (for `ApiProvidersSource`)."""
    env = os.environ if env is None else env
    catalog = catalog or load_catalog()
    enabled = {}
    for provider in catalog.providers.values():
        key = next((env[v] for v in provider.key_env if env.get(v)), "")
        if key:
            enabled[provider.name] = key
    return enabled


@dataclass(frozen=True)
class HostedBackendKey:
    """A configured hosted backend: which provider's list it serves, and its key."""

    kind: str  # the provider in the data file ("openai", "anthropic", ...)
    api_key: str


class ApiProvidersSource:
    """Every listed model of every hosted backend with a key.

    `enabled`: backend name → `HostedBackendKey`, or → the key alone when the
    backend is named after its provider. Ids are ``<backend name>/<model>``, so
    two backends of one provider (``openai`` and ``openai-eu``) stay apart.
    """

    def __init__(
        self, enabled: Mapping[str, str | HostedBackendKey], catalog: ApiCatalog | None = None
    ) -> None:
        self.name = "api"
        keys = {
            name: key if isinstance(key, HostedBackendKey) else HostedBackendKey(name, key)
            for name, key in enabled.items()
        }
        self._enabled = {name: key for name, key in keys.items() if key.api_key}
        self._catalog = catalog

    async def discover(self) -> SourceSnapshot:
        catalog = self._catalog or load_catalog()
        entries: list[common_pb2.ModelEntry] = []
        errors = []
        for name in sorted(self._enabled):
            kind = self._enabled[name].kind
            provider = catalog.providers.get(kind)
            if provider is None:
                errors.append(
                    f"api: no models are listed for provider '{kind}' (as of {catalog.as_of})"
                )
                continue
            entries.extend(_served_by(name, e) for e in provider.entries)
        return SourceSnapshot(self.name, tuple(entries), tuple(errors))


def _served_by(backend: str, entry: common_pb2.ModelEntry) -> common_pb2.ModelEntry:
    out = common_pb2.ModelEntry()
    out.CopyFrom(entry)
    out.id, out.provider = catalog_id(backend, entry.name), backend
    return out
