"""Providers added and removed at run time.

Removing a provider makes its models unavailable, not forgotten: they stay in
the catalog (and in watchers' snapshots) with a reason, and come back when
the provider is added again.
"""

from __future__ import annotations

from modelyard.catalog_limits import PROVIDER_ENDPOINT_CHARS, PROVIDER_KIND_CHARS
from modelyard.registry.catalog import Catalog
from modelyard.registry.validation import check_provider_name, check_text
from modelyard_client.errors import InvalidRequest, NotFound
from modelyard_client.v1 import common_pb2, registry_pb2


def _removed_reason(name: str) -> str:
    return f"provider '{name}' was removed"


class Providers:
    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._providers = {p.name: p for p in catalog.store.providers()}

    def list(self) -> list[registry_pb2.Provider]:
        return [self._providers[n] for n in sorted(self._providers)]

    def add(self, provider: registry_pb2.Provider) -> registry_pb2.Provider:
        # A provider's name is the backend name its models' ids start with.
        check_provider_name(provider.name)
        subject = f"provider '{provider.name}'"
        if not provider.kind:
            raise InvalidRequest(f"{subject}: kind must not be empty", field="kind")
        check_text(subject, "kind", provider.kind, PROVIDER_KIND_CHARS, chars="visible")
        check_text(subject, "endpoint", provider.endpoint, PROVIDER_ENDPOINT_CHARS, chars="visible")
        stored = registry_pb2.Provider()
        stored.CopyFrom(provider)
        stored.enabled = True
        self._catalog.store.save_provider(stored)
        self._providers[stored.name] = stored
        reason = _removed_reason(stored.name)
        for entry in self._catalog.list(provider=stored.name, include_unavailable=True):
            if entry.health_reason == reason:
                self._catalog.update_health(entry.id, common_pb2.HEALTH_STATUS_HEALTHY, "")
        return stored

    def remove(self, name: str) -> int:
        """Remove a provider; returns how many of its models became unavailable."""
        if name not in self._providers:
            raise NotFound(f"provider '{name}' is not registered")
        self._catalog.store.delete_provider(name)
        del self._providers[name]
        count = 0
        for entry in self._catalog.list(provider=name):
            self._catalog.update_health(
                entry.id, common_pb2.HEALTH_STATUS_UNAVAILABLE, _removed_reason(name)
            )
            count += 1
        return count
