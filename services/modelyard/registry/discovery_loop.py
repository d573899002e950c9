"""Running discovery sources on an interval and on demand."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from modelyard.discovery.source import DiscoverySource
from modelyard.registry.catalog import Catalog
from modelyard.registry.discovery_sync import SyncResult, apply_snapshot, mark_source_unreachable
from modelyard_client.errors import ModelyardError, NotFound
from modelyard_client.v1 import common_pb2

log = logging.getLogger(__name__)


@dataclass
class SourceBinding:
    """A source, and where the models it finds are served (if the source does not say)."""

    source: DiscoverySource
    deployments: Sequence[common_pb2.Deployment] = field(default_factory=tuple)


class DiscoveryLoop:
    def __init__(
        self, catalog: Catalog, bindings: Sequence[SourceBinding], interval_s: float
    ) -> None:
        self._catalog = catalog
        self._bindings = list(bindings)
        self._interval_s = interval_s
        self._lock = asyncio.Lock()  # one pass at a time, on demand or scheduled

    async def run_once(self, source_name: str = "") -> SyncResult:
        """One pass over every source (or the one named); per-source failures are reported."""
        chosen = [b for b in self._bindings if not source_name or b.source.name == source_name]
        if source_name and not chosen:
            names = ", ".join(b.source.name for b in self._bindings) or "none configured"
            raise NotFound(f"discovery source '{source_name}' is not configured ({names})")
        total = SyncResult()
        async with self._lock:
            for binding in chosen:
                name = binding.source.name
                try:
                    snapshot = await binding.source.discover()
                except ModelyardError as exc:
                    mark_source_unreachable(self._catalog, name, exc.message)
                    total.errors.append(f"{name}: {exc.message}")
                    continue
                total.merge(apply_snapshot(self._catalog, snapshot, binding.deployments))
        for error in total.errors:
            log.warning("discovery: %s", error)
        return total

    async def run_forever(self) -> None:
        while True:
            await self.run_once()
            await asyncio.sleep(self._interval_s)
