"""The gateway's in-memory copy of the catalog, kept live by `WatchModels`.

The rules of the copy (resume by revision, a full snapshot when the registry
cannot resume, stale after a failed watch, serving on through an unreachable
registry) are `WatchedCopy`'s, shared with the route table's copy.
"""

from __future__ import annotations

from collections.abc import AsyncIterable

import grpc

from modelyard.gateway.watched_copy import REMOVED, SYNCED, UPSERTED, WatchedCopy
from modelyard_client.errors import ModelNotFound
from modelyard_client.v1 import common_pb2, registry_pb2, registry_pb2_grpc

Change = registry_pb2.ModelChange
_KINDS = {Change.KIND_UPSERTED: UPSERTED, Change.KIND_REMOVED: REMOVED, Change.KIND_SYNCED: SYNCED}


class CatalogView(WatchedCopy[common_pb2.ModelEntry]):
    what = "catalog"

    def get(self, model_id: str) -> common_pb2.ModelEntry:
        try:
            return self._items[model_id]
        except KeyError:
            raise ModelNotFound(model_id) from None

    def find(self, model_id: str) -> common_pb2.ModelEntry | None:
        """The entry of `model_id`; None when the catalog does not hold it."""
        return self._items.get(model_id)

    def models(self) -> list[common_pb2.ModelEntry]:
        return list(self._items.values())

    @property
    def catalog_id(self) -> str:
        """The catalog `revision` counts in, from the last SYNCED."""
        return self.source_id

    def _open(
        self, channel: grpc.aio.Channel, after_revision: int
    ) -> AsyncIterable[registry_pb2.ModelChange]:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        request = registry_pb2.WatchModelsRequest(
            after_revision=after_revision, catalog_id=self.source_id
        )
        return stub.WatchModels(request)

    def _read(
        self, change: registry_pb2.ModelChange
    ) -> tuple[str, str, common_pb2.ModelEntry | None, int, str]:
        return (
            _KINDS.get(change.kind, ""),
            change.model.id,
            change.model,
            change.revision,
            change.catalog_id,
        )
