"""What the in-process speech engines (Whisper, Piper) share: their models' turns and loads.

Each model a speech engine serves runs one call at a time, in a worker thread;
the calls waiting for it are bounded by the backend's ``max_queue`` (its
`Admission`, scope ``model:<id>``), the rest refused with `Overloaded`. Its
models load on first use (or `load`, or ``hot_swap.preload``) within the
hot-swap memory budget (`LoadedModels`: leases, idle unload, cold-start
reports) and are released by `unload`. An engine says which models it serves
once it has found them (`_serve`); a model it does not serve is `ModelNotFound`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Generic, TypeVar

from modelyard.backends.admission import Admission
from modelyard.backends.loaded_models import LoadedModels, ModelOpener, default_budget_bytes
from modelyard_client.errors import ModelNotFound
from modelyard_client.v1 import common_pb2

M = TypeVar("M")
ColdStartReport = Callable[[str, float], None]


class InProcessModels(Generic[M]):
    """The models of backend `backend` opened by `opener`, within `memory_budget_bytes`
    (None: three quarters of the machine's memory) and `max_loaded`; one idle for
    `idle_timeout_s` (0: never) is unloaded; `preload` (catalog ids) load in `_serve`."""

    def __init__(
        self,
        backend: str,
        opener: ModelOpener[M],
        *,
        max_loaded: int,
        max_queue: int,
        memory_budget_bytes: int | None,
        idle_timeout_s: float,
        preload: Iterable[str],
    ) -> None:
        self.backend = backend
        self.max_queue = max_queue
        self._preload = tuple(preload)
        self._reports: list[ColdStartReport] = []
        self._admissions: dict[str, Admission] = {}
        self._models = LoadedModels(
            opener,
            budget_bytes=memory_budget_bytes or default_budget_bytes(),
            max_loaded=max_loaded,
            idle_timeout_s=idle_timeout_s,
            on_loaded=self._cold_started,
        )

    async def _serve(self, model_ids: Iterable[str]) -> None:
        """Serve `model_ids` from now on, and load those `preload` names."""
        self._admissions = {m: self._admission(m) for m in model_ids}
        self._models.start()
        await self._models.preload([m for m in self._preload if m in self._admissions])

    def _admission(self, model_id: str) -> Admission:
        limits = f"backends.{self.backend}.max_queue={self.max_queue}"
        return Admission(f"model:{model_id}", f"model '{model_id}'", limits, 1, self.max_queue)

    def _check(self, model_id: str) -> None:
        """`ModelNotFound` unless this engine serves `model_id`."""
        if model_id not in self._admissions:
            raise ModelNotFound(model_id, f"the {self.backend} backend")

    @contextlib.asynccontextmanager
    async def _turn(self, model_id: str) -> AsyncIterator[M]:
        """The model's one slot (after the calls queued before this one) and a lease on it,
        loaded; `Overloaded` at once when its queue is full."""
        async with self._admissions[model_id].slot(), self._models.lease(model_id) as model:
            yield model

    async def close(self) -> None:
        await self._models.close()

    def serves(self, model_id: str) -> bool:
        return model_id in self._admissions

    def loaded_models(self) -> list[str]:
        return self._models.loaded()

    async def load(self, model_id: str) -> float:
        self._check(model_id)
        return await self._models.load(model_id)

    async def load_beside(self, model_id: str, keep_loaded: Sequence[str]) -> float:
        """Load `model_id` without unloading any of `keep_loaded` (`MemoryBudgetExceeded`
        when the budget cannot hold them together)."""
        self._check(model_id)
        return await self._models.load(model_id, keep_loaded)

    async def unload(self, model_id: str) -> bool:
        self._check(model_id)
        return await self._models.unload(model_id)

    def _with_cold_start(self, entry: common_pb2.ModelEntry) -> common_pb2.ModelEntry:
        """`entry` with its model's last load time as its cold start, once it has loaded."""
        cold_start_ms = self._models.cold_start_ms(entry.id)
        if cold_start_ms is not None:
            entry.performance.cold_start_ms = cold_start_ms
        return entry

    def report_cold_starts(self, report: ColdStartReport) -> None:
        """Call `report(model_id, milliseconds)` after each model load from now on."""
        self._reports.append(report)

    def _cold_started(self, model_id: str, took_ms: float) -> None:
        for report in self._reports:
            report(model_id, took_ms)
