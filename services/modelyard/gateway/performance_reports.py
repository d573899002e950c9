"""The gateway's live figures written to the registry's performance profiles, so that
selection scores what the models do now.

Every `monitoring.metrics_interval` (5 s) `PerformanceReports` sends
`RegistryService.UpdatePerformance` for each model with attempts in this gateway's
window (`performance.py`) whose profile those figures change: latency p50 and p95 and
tokens/s (kept as the entry has them while the window measured none), the error rate
and the number of attempts; the cold start stays as the live catalog copy has it (the
backend's to write). A model that left the catalog is passed over. Several gateways
each write their own window: the last writer wins until the next round.

A write that fails is logged (one line per round at most, and one per `LOG_EVERY_S`)
and tried again the next round with the figures of then: never fatal, never in a
call's way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from modelyard.gateway.catalog_view import CatalogView
from modelyard.gateway.performance import PerformanceTracker
from modelyard.security.channels import PLAINTEXT, InternalChannels
from modelyard.telemetry import metadata_with_trace
from modelyard_client.channel import CHANNEL_OPTIONS
from modelyard_client.errors import ModelNotFound, ModelyardError, remote_errors
from modelyard_client.v1 import common_pb2, registry_pb2, registry_pb2_grpc

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 5.0
LOG_EVERY_S = 60.0

# Writes one model's profile; raising means it was not written.
Send = Callable[[str, common_pb2.PerformanceProfile], Awaitable[object]]


class PerformanceReports:
    """Writes `tracker`'s figures to the registry every `interval_s` (see the module
    docstring); `catalog`: the gateway's live copy, which says what each entry holds."""

    def __init__(
        self,
        tracker: PerformanceTracker,
        catalog: CatalogView,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tracker = tracker
        self.catalog = catalog
        self.interval_s = interval_s
        self.written = 0  # profiles written since start
        self.failed = 0  # writes that failed since start
        self._clock = clock
        self._failure_logged_at = -LOG_EVERY_S

    async def run(self, registry_address: str, channels: InternalChannels = PLAINTEXT) -> None:
        """Write to the registry at `registry_address` every `interval_s` until cancelled."""
        async with channels.open(registry_address, CHANNEL_OPTIONS) as channel:
            stub = registry_pb2_grpc.RegistryServiceStub(channel)

            async def send(model_id: str, profile: common_pb2.PerformanceProfile) -> object:
                with remote_errors():
                    return await stub.UpdatePerformance(
                        registry_pb2.UpdatePerformanceRequest(id=model_id, performance=profile),
                        metadata=metadata_with_trace(),
                        timeout=SEND_TIMEOUT_S,
                    )

            while True:
                await asyncio.sleep(self.interval_s)
                await self.write(send)

    async def write(self, send: Send) -> int:
        """One round: each changed profile written with `send`; how many were."""
        written = 0
        failures: list[str] = []
        for model_id in self.tracker.model_ids():
            await asyncio.sleep(0)  # a full window takes a few ms to read: calls go between
            try:
                entry = self.catalog.get(model_id)
            except ModelNotFound:
                continue  # unregistered since: nothing to write to
            profile = self.tracker.figures(model_id).profile(entry.performance)
            if profile == entry.performance:
                continue
            try:
                await send(model_id, profile)
            except Exception as exc:  # whatever it was, the next round tries again
                self.failed += 1
                reason = exc.message if isinstance(exc, ModelyardError) else repr(exc)
                failures.append(f"{model_id}: {reason}")
                continue
            written += 1
        self.written += written
        now = self._clock()
        if failures and now - self._failure_logged_at >= LOG_EVERY_S:
            self._failure_logged_at = now
            log.warning(
                "performance: %d profile(s) did not reach the registry (tried again in %gs): %s",
                len(failures),
                self.interval_s,
                "; ".join(failures),
            )
        return written
