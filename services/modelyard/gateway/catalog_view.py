"""The gateway's in-memory copy of the catalog, kept live by `WatchModels`.

The request path reads a plain dict, never the registry: a control-plane call
per request would cost a gRPC hop. The watcher resumes from its last revision
after a reconnect, so it misses nothing; when the registry cannot resume it
(a revision older than its change log, a catalog that started over) the view
starts again from a full snapshot.

A watch that fails for any other reason than an unreachable registry (a
change the view cannot read, the registry's own fault) starts again from a
full snapshot too: resuming would replay the same change, and fail the same
way, forever. From that failure until a snapshot is whole again the copy is
*stale*: it is known to miss changes (a model since marked unavailable, one
removed). The gateway routes on it for `stale_after_s` (a failure that a
resync mends costs no request), then refuses requests (`BackendUnavailable`,
`check_fresh`) until the copy is whole again. An unreachable registry does
not make the copy stale: the gateway keeps serving from the last catalog it
knew, the reason it keeps a copy. Retries back off from `retry_s` to
`max_retry_s` while no watch reaches SYNCED.
"""

from __future__ import annotations

import asyncio
import logging
import time

import grpc

from modelyard.catalog_limits import CHANNEL_OPTIONS
from modelyard.errors import BackendUnavailable, FailedPrecondition, ModelNotFound, error_from_rpc
from modelyard.v1 import common_pb2, registry_pb2, registry_pb2_grpc

log = logging.getLogger(__name__)
Change = registry_pb2.ModelChange

# The registry is away (restarting, unreachable): resume where the watch stopped.
_UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
# How long the gateway routes on a copy known to be stale.
STALE_AFTER_S = 10.0


class CatalogView:
    def __init__(self, *, stale_after_s: float = STALE_AFTER_S) -> None:
        self._models: dict[str, common_pb2.ModelEntry] = {}
        self._pending: dict[str, common_pb2.ModelEntry] | None = None  # snapshot being read
        self.revision = 0
        self.catalog_id = ""  # the catalog `revision` counts in, from the last SYNCED
        self.synced = asyncio.Event()
        self.stale_after_s = stale_after_s
        # Since when (time.monotonic) the copy is known to miss changes, and why.
        self.stale_since: float | None = None
        self.stale_reason = ""

    def get(self, model_id: str) -> common_pb2.ModelEntry:
        try:
            return self._models[model_id]
        except KeyError:
            raise ModelNotFound(model_id) from None

    def models(self) -> list[common_pb2.ModelEntry]:
        return list(self._models.values())

    def check_fresh(self) -> None:
        """`BackendUnavailable` when the copy has been stale for longer than `stale_after_s`."""
        if self.stale_since is None:
            return
        stale_for = time.monotonic() - self.stale_since
        if stale_for > self.stale_after_s:
            raise BackendUnavailable(
                f"the gateway's copy of the catalog has been stale for {stale_for:.0f}s "
                f"({self.stale_reason}); no request is routed on it until it resynchronises"
            )

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
            self.stale_since, self.stale_reason = None, ""
            self.synced.set()
        if not reading_snapshot or change.kind == Change.KIND_SYNCED:
            # A half-read snapshot is no resume point: only SYNCED ends it.
            self.revision = max(self.revision, change.revision)

    def _mark_stale(self, reason: str) -> None:
        if self.stale_since is None:
            self.stale_since = time.monotonic()
        self.stale_reason = reason

    async def follow(
        self, registry_address: str, *, retry_s: float = 0.5, max_retry_s: float = 30.0
    ) -> None:
        """Keep the view in step with the registry until cancelled."""
        async with grpc.aio.insecure_channel(registry_address, options=CHANNEL_OPTIONS) as channel:
            stub = registry_pb2_grpc.RegistryServiceStub(channel)
            delay = retry_s
            while True:
                if self.revision == 0:
                    self._pending = {}
                reached_sync = False
                try:
                    stream = stub.WatchModels(
                        registry_pb2.WatchModelsRequest(
                            after_revision=self.revision, catalog_id=self.catalog_id
                        )
                    )
                    async for change in stream:
                        self.apply(change)
                        reached_sync = reached_sync or change.kind == Change.KIND_SYNCED
                except grpc.aio.AioRpcError as exc:
                    err = error_from_rpc(exc)
                    if isinstance(err, FailedPrecondition):
                        # Fell behind, a revision gone from the log, or another catalog.
                        log.warning("catalog watch: %s; starting over", err.message)
                        self.revision = 0
                    elif exc.code() in _UNREACHABLE:
                        log.warning("catalog watch lost (%s); resuming", err.code.name)
                    else:
                        reason = f"catalog watch failed ({err.code.name}: {err.message})"
                        log.warning("%s; starting over from a full snapshot", reason)
                        self._mark_stale(reason)
                        self.revision = 0
                delay = retry_s if reached_sync else min(delay * 2, max_retry_s)
                await asyncio.sleep(delay)
