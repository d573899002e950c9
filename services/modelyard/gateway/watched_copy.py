"""An in-memory copy of a control-plane table, kept live by its Watch stream.

The request path reads a plain dict, never the service that owns the table:
a control-plane call per request would cost a gRPC hop. Two tables are
copied this way, with one set of rules: the catalog (`CatalogView`, from the
registry's `WatchModels`) and the routes (`RouteView`, from the hot-swap
service's `WatchRoutes`).

The watcher resumes from its last revision after a reconnect, so it misses
nothing; when the owner cannot resume it (a revision it no longer holds, a
table that started over) the copy starts again from a full snapshot, read
aside and swapped in whole at SYNCED.

A watch that fails for any other reason than an unreachable owner (a change
the copy cannot read, the owner's own fault) starts again from a full
snapshot too: resuming would replay the same change, and fail the same way,
forever. From that failure until a snapshot is whole again the copy is
*stale*: it is known to miss changes. The gateway routes on it for
`stale_after_s` (a failure that a resync mends costs no request), then
refuses requests (`BackendUnavailable`, `check_fresh`) until the copy is
whole again. An unreachable owner does not make the copy stale: the gateway
keeps serving from the last table it knew, the reason it keeps a copy.
Retries back off from `retry_s` to `max_retry_s` while no watch reaches SYNCED.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterable
from typing import Any, ClassVar, Generic, TypeVar

import grpc

from modelyard.security.channels import PLAINTEXT, InternalChannels
from modelyard_client.channel import CHANNEL_OPTIONS
from modelyard_client.errors import BackendUnavailable, FailedPrecondition, error_from_rpc

log = logging.getLogger(__name__)

Item = TypeVar("Item")
# The owner is away (restarting, unreachable): resume where the watch stopped.
_UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
# How long the gateway routes on a copy known to be stale.
STALE_AFTER_S = 10.0

# What one change of a watch stream says, read by a subclass's `_read`.
UPSERTED, REMOVED, SYNCED = "upserted", "removed", "synced"


class WatchedCopy(Generic[Item]):
    """The copy's state and its watch loop; a subclass says how to open and read a stream."""

    what: ClassVar[str]  # how log lines and errors name the table: "catalog"

    def __init__(self, *, stale_after_s: float = STALE_AFTER_S) -> None:
        self._items: dict[str, Item] = {}
        self._pending: dict[str, Item] | None = None  # snapshot being read
        self.revision = 0
        self.source_id = ""  # the table `revision` counts in, from the last SYNCED
        self.synced = asyncio.Event()
        self.stale_after_s = stale_after_s
        # Since when (time.monotonic) the copy is known to miss changes, and why.
        self.stale_since: float | None = None
        self.stale_reason = ""

    # ---- what a subclass provides -------------------------------------------

    def _open(self, channel: grpc.aio.Channel, after_revision: int) -> AsyncIterable[Any]:
        """The watch stream from `after_revision`, in `self.source_id`."""
        raise NotImplementedError

    def _read(self, change: Any) -> tuple[str, str, Item | None, int, str]:
        """(UPSERTED/REMOVED/SYNCED, key, item, revision, source id) of one change."""
        raise NotImplementedError

    # ---- reading and applying -----------------------------------------------

    def check_fresh(self) -> None:
        """`BackendUnavailable` when the copy has been stale for longer than `stale_after_s`."""
        if self.stale_since is None:
            return
        stale_for = time.monotonic() - self.stale_since
        if stale_for > self.stale_after_s:
            raise BackendUnavailable(
                f"the gateway's copy of the {self.what} has been stale for {stale_for:.0f}s "
                f"({self.stale_reason}); no request is routed on it until it resynchronises"
            )

    def apply(self, change: Any) -> str:
        """Apply one change from the stream (a snapshot replaces everything at SYNCED); its kind."""
        kind, key, item, revision, source_id = self._read(change)
        reading_snapshot = self._pending is not None
        target = self._pending if self._pending is not None else self._items
        if kind == UPSERTED and item is not None:
            target[key] = item
        elif kind == REMOVED:
            target.pop(key, None)
        elif kind == SYNCED:
            if self._pending is not None:
                self._items, self._pending = self._pending, None
            self.source_id = source_id
            self.stale_since, self.stale_reason = None, ""
            self.synced.set()
        if not reading_snapshot or kind == SYNCED:
            # A half-read snapshot is no resume point: only SYNCED ends it.
            self.revision = max(self.revision, revision)
        return kind

    def _mark_stale(self, reason: str) -> None:
        if self.stale_since is None:
            self.stale_since = time.monotonic()
        self.stale_reason = reason

    async def follow(
        self,
        address: str,
        *,
        retry_s: float = 0.5,
        max_retry_s: float = 30.0,
        channels: InternalChannels = PLAINTEXT,
    ) -> None:
        """Keep the copy in step with the table's owner at `address` until cancelled."""
        async with channels.open(address, CHANNEL_OPTIONS) as channel:
            delay = retry_s
            while True:
                if self.revision == 0:
                    self._pending = {}
                reached_sync = False
                try:
                    async for change in self._open(channel, self.revision):
                        reached_sync = self.apply(change) == SYNCED or reached_sync
                except grpc.aio.AioRpcError as exc:
                    err = error_from_rpc(exc)
                    if isinstance(err, FailedPrecondition):
                        # Fell behind, a revision gone from the log, or another table.
                        log.warning("%s watch: %s; starting over", self.what, err.message)
                        self.revision = 0
                    elif exc.code() in _UNREACHABLE:
                        log.warning("%s watch lost (%s); resuming", self.what, err.code.name)
                    else:
                        reason = f"{self.what} watch failed ({err.code.name}: {err.message})"
                        log.warning("%s; starting over from a full snapshot", reason)
                        self._mark_stale(reason)
                        self.revision = 0
                delay = retry_s if reached_sync else min(delay * 2, max_retry_s)
                await asyncio.sleep(delay)
