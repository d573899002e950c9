"""The gateway's in-memory copy of the catalog, kept live by `WatchModels`.

The request path reads a plain dict, never the registry: a control-plane call
per request would cost a gRPC hop. The watcher resumes from its last revision
after a reconnect, so it misses nothing; when the registry cannot resume it
(a revision older than its change log, a catalog that started over) the view
starts again from a full snapshot.
"""

from __future__ import annotations

import asyncio
import logging

import grpc

from modelyard.errors import FailedPrecondition, ModelNotFound, error_from_rpc
from modelyard.v1 import common_pb2, registry_pb2, registry_pb2_grpc

log = logging.getLogger(__name__)
Change = registry_pb2.ModelChange


class CatalogView:
    def __init__(self) -> None:
        self._models: dict[str, common_pb2.ModelEntry] = {}
        self._pending: dict[str, common_pb2.ModelEntry] | None = None  # snapshot being read
        self.revision = 0
        self.catalog_id = ""  # the catalog `revision` counts in, from the last SYNCED
        self.synced = asyncio.Event()

    def get(self, model_id: str) -> common_pb2.ModelEntry:
        try:
            return self._models[model_id]
        except KeyError:
            raise ModelNotFound(model_id) from None

    def models(self) -> list[common_pb2.ModelEntry]:
        return list(self._models.values())

    def apply(self, change: registry_pb2.ModelChange) -> None:
        """Apply one change from the stream (a snapshot replaces everything at SYNCED)."""
        reading_snapshot = self._pending is not None
        target = self._pending if self._pending is not None else self._models
        if change.kind == Change.KIND_UPSERTED:
            target[change.model.id] = change.model
        elif change.kind == Change.KIND_REMOVED:
            target.pop(change.model.id, None)
        elif change.kind == Change.KIND_SYNCED:
            if self._pending is not None:
                self._models, self._pending = self._pending, None
            self.catalog_id = change.catalog_id
            self.synced.set()
        if not reading_snapshot or change.kind == Change.KIND_SYNCED:
            # A half-read snapshot is no resume point: only SYNCED ends it.
            self.revision = max(self.revision, change.revision)

    async def follow(self, registry_address: str, *, retry_s: float = 0.5) -> None:
        """Keep the view in step with the registry until cancelled."""
        async with grpc.aio.insecure_channel(registry_address) as channel:
            stub = registry_pb2_grpc.RegistryServiceStub(channel)
            while True:
                if self.revision == 0:
                    self._pending = {}
                try:
                    stream = stub.WatchModels(
                        registry_pb2.WatchModelsRequest(
                            after_revision=self.revision, catalog_id=self.catalog_id
                        )
                    )
                    async for change in stream:
                        self.apply(change)
                except grpc.aio.AioRpcError as exc:
                    err = error_from_rpc(exc)
                    # Fell behind, a revision gone from the log, or another catalog.
                    if isinstance(err, FailedPrecondition):
                        log.warning("catalog watch: %s; starting over", err.message)
                        self.revision = 0
                    else:
                        log.warning("catalog watch lost (%s); retrying", err.code.name)
                await asyncio.sleep(retry_s)
