"""Model versions: register new ones, list them, pin one or follow the latest.

The catalog's entry for an id is its *current* version: the pinned one when
a pin is set, otherwise the latest registered. Every version stays stored,
so a pin can move back to an older one at any time.
"""

from __future__ import annotations

from modelyard.registry.catalog import Catalog, with_defaults
from modelyard.registry.validation import check_entry, check_model_id, check_version
from modelyard_client.errors import InvalidRequest, ModelNotFound
from modelyard_client.v1 import common_pb2


class ModelVersions:
    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._pins = catalog.store.pins()

    def register(
        self, entry: common_pb2.ModelEntry, *, make_current: bool
    ) -> common_pb2.ModelEntry:
        """Keep a new version; it becomes current if asked, or if the id follows the latest."""
        check_entry(entry)
        if not entry.version:
            raise InvalidRequest(f"model '{entry.id}': version must not be empty", field="version")
        stored = with_defaults(entry)
        pinned = self._pins.get(entry.id)
        if make_current and pinned and pinned != entry.version:
            self._pin(entry.id, entry.version)
            pinned = entry.version
        if make_current or not pinned or pinned == entry.version:
            return self._catalog.put(stored)
        self._catalog.store.write_version(stored)
        return stored

    def list(self, model_id: str) -> list[common_pb2.ModelEntry]:
        check_model_id(model_id)
        found = self._catalog.store.versions(model_id)
        if not found:
            self._catalog.get(model_id)  # NOT_FOUND for an unknown id
        return found

    def get(self, model_id: str, version: str) -> common_pb2.ModelEntry:
        check_version(model_id, version)
        for entry in self.list(model_id):
            if entry.version == version:
                return entry
        raise ModelNotFound(f"{model_id}@{version}", "the registry")

    def pin(self, model_id: str, version: str) -> common_pb2.ModelEntry:
        """Serve `version` from now on; an empty version follows the latest again."""
        versions = self.list(model_id)
        if version:
            chosen = self.get(model_id, version)
        elif versions:
            chosen = versions[-1]
        else:
            return self._catalog.get(model_id)
        self._pin(model_id, version)
        return self._catalog.put(chosen)

    def _pin(self, model_id: str, version: str) -> None:
        self._catalog.store.set_pin(model_id, version)
        if version:
            self._pins[model_id] = version
        else:
            self._pins.pop(model_id, None)
