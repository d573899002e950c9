"""The models an in-process engine holds loaded, within a memory budget.

`LoadedModels` is generic over what a loaded model is: a `ModelOpener` says
how big a model will be, opens it and closes it (llama.cpp's `Llama` today,
a CoreML model later). The rules, which no caller has to repeat:

- **Budget.** The loaded models' estimated sizes (models being opened and
  closed included, until their memory is really free) stay within
  `budget_bytes`, and at most `max_loaded` models are loaded. A model larger
  than the whole budget is refused (`MemoryBudgetExceeded`) before anything is
  unloaded for it.
- **Leases.** Every generation holds a lease on its model (`lease`). A model
  with a lease out is never closed: making room evicts the least recently
  used model that has none, and when every candidate is busy it waits for a
  lease to end, never cancelling one. (A model that never goes idle under
  steady traffic keeps its place, and a load waiting behind it waits.)
- **One load per model.** Concurrent requests for a model that is not loaded
  share one open and its outcome, success or error.
- **Keeping models beside a load** (`load(model, keep_loaded=...)`, a swap
  warming its target): `can_hold` refuses at once when the budget cannot hold
  the model and those together, naming every size; otherwise they are pinned
  for the load and room is made from the other models only.
- **Explicit unload** waits for the model's leases to end; meanwhile it takes
  no new lease (a request for it waits, then loads it again).
- **Idle unload.** With an idle timeout, a background task (`start`/`close`)
  unloads models that no lease has used for that long.
- **Cold start.** Each open's wall time is kept (`cold_start_ms`) and handed to
  `on_loaded`, for the model's performance profile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from modelyard_client.errors import MemoryBudgetExceeded

log = logging.getLogger(__name__)

M = TypeVar("M")
MIB = 1024 * 1024


class ModelOpener(Protocol[M]):
    """How one engine's models are sized, opened and closed."""

    def size_bytes(self, model_id: str) -> int:
        """The memory the model will take loaded (an estimate); raises for an unknown model."""
        ...

    async def open(self, model_id: str) -> M: ...

    async def close(self, model_id: str, model: M) -> None: ...


def default_budget_bytes() -> int:
    """Three quarters of the machine's physical memory."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 3 // 4


def mib(size_bytes: int) -> int:
    """A size in MiB, rounded up (what refusals name)."""
    return math.ceil(size_bytes / MIB)


@dataclass
class _Slot(Generic[M]):
    size: int
    model: M | None = None  # None while it opens
    leases: int = 0
    last_used: float = 0.0
    draining: bool = False  # an unload waits for its leases: it takes no new one


class LoadedModels(Generic[M]):
    """Loaded models within `budget_bytes` and `max_loaded` (see the module's rules)."""

    def __init__(
        self,
        opener: ModelOpener[M],
        *,
        budget_bytes: int,
        max_loaded: int,
        idle_timeout_s: float = 0.0,
        on_loaded: Callable[[str, float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._opener = opener
        self.budget_bytes = budget_bytes
        self.max_loaded = max_loaded
        self._idle_timeout_s = idle_timeout_s
        self._on_loaded = on_loaded
        self._clock = clock
        self._slots: OrderedDict[str, _Slot[M]] = OrderedDict()  # least recently used first
        self._opening: dict[str, asyncio.Task[_Slot[M]]] = {}
        self._closing_bytes = 0
        self._closing_count = 0
        self._pinned: Counter[str] = Counter()
        self._cold_start_ms: dict[str, float] = {}
        self._change = asyncio.Event()
        self._idle_task: asyncio.Task[None] | None = None

    # ---- what is loaded ---------------------------------------------------------------

    def loaded(self) -> list[str]:
        """The open models, least recently used first."""
        return [m for m, s in self._slots.items() if s.model is not None]

    def leases(self, model_id: str) -> int:
        slot = self._slots.get(model_id)
        return slot.leases if slot else 0

    def cold_start_ms(self, model_id: str) -> float | None:
        """How long the model's last open took, or None if it has not been opened."""
        return self._cold_start_ms.get(model_id)

    def used_bytes(self) -> int:
        """Memory held: loaded models, models opening and models still closing."""
        return sum(s.size for s in self._slots.values()) + self._closing_bytes

    # ---- life cycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Start unloading idle models (when an idle timeout is set)."""
        if self._idle_timeout_s > 0 and self._idle_task is None:
            self._idle_task = asyncio.get_running_loop().create_task(self._unload_idle_forever())

    async def close(self) -> None:
        """Stop the idle task and unload every model, each once its leases have ended."""
        if self._idle_task is not None:
            self._idle_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._idle_task
            self._idle_task = None
        for task in list(self._opening.values()):
            with contextlib.suppress(Exception):
                await asyncio.shield(task)
        for model_id in list(self._slots):
            await self.unload(model_id)

    async def preload(self, model_ids: Iterable[str]) -> None:
        """Load each model in order; one that cannot load is logged and skipped."""
        for model_id in model_ids:
            try:
                await self.load(model_id)
            except Exception as exc:
                log.warning("preloading %s failed: %s", model_id, exc)

    # ---- loading ---------------------------------------------------------------------------

    def can_hold(self, model_id: str, keep_loaded: Sequence[str] = ()) -> None:
        """Raise `MemoryBudgetExceeded` unless the budget holds `model_id` and `keep_loaded`
        together (by size and by count); other loaded models do not count: they can go."""
        sizes = {model_id: self._size(model_id)}
        for kept in keep_loaded:
            sizes.setdefault(kept, self._size(kept))
        total = sum(sizes.values())
        if len(sizes) > self.max_loaded or total > self.budget_bytes:
            raise self._refusal(model_id, sizes)

    async def load(self, model_id: str, keep_loaded: Sequence[str] = ()) -> float:
        """Make `model_id` loaded without unloading any of `keep_loaded`; the milliseconds
        this call took (about 0 when it was loaded already)."""
        started = time.perf_counter()
        self.can_hold(model_id, keep_loaded)
        kept = [m for m in dict.fromkeys(keep_loaded) if m != model_id]
        self._pinned.update(kept)
        try:
            await self._ready(model_id)
        finally:
            self._pinned.subtract(kept)
            self._pinned += Counter()  # drop the zeros
        return (time.perf_counter() - started) * 1000

    @contextlib.asynccontextmanager
    async def lease(self, model_id: str) -> AsyncIterator[M]:
        """The loaded model (loading it first if needed), held loaded until the block ends."""
        slot = await self._ready(model_id)
        assert slot.model is not None
        slot.leases += 1
        try:
            yield slot.model
        finally:
            slot.leases -= 1
            slot.last_used = self._clock()
            self._changed()

    async def unload(self, model_id: str) -> bool:
        """Close the model once its leases have ended; whether it was loaded."""
        opening = self._opening.get(model_id)
        if opening is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(opening)
        slot = self._slots.get(model_id)
        if slot is None or slot.model is None:
            return False
        slot.draining = True
        while slot.leases:
            await self._next_change()
        if self._slots.get(model_id) is not slot:
            return False  # another unload closed it while this one waited
        await self._close(model_id, slot)
        return True

    async def unload_idle(self) -> list[str]:
        """Close every model no lease has used for the idle timeout; their ids, oldest first."""
        closed: list[str] = []
        while True:  # looked at again after each close: a lease may have come meanwhile
            now = self._clock()
            due = [(m, s) for m, s in self._idle() if now - s.last_used >= self._idle_timeout_s]
            if not due:
                return closed
            model_id, slot = due[0]
            log.info("unloading %s: idle for %.1f s", model_id, now - slot.last_used)
            await self._close(model_id, slot)
            closed.append(model_id)

    # ---- internals ---------------------------------------------------------------------------

    def _size(self, model_id: str) -> int:
        slot = self._slots.get(model_id)
        return slot.size if slot is not None else self._opener.size_bytes(model_id)

    def _refusal(self, model_id: str, sizes: dict[str, int]) -> MemoryBudgetExceeded:
        return MemoryBudgetExceeded(
            model_id,
            {m: mib(b) for m, b in sizes.items()},
            budget_mb=self.budget_bytes // MIB,
            max_loaded=self.max_loaded,
        )

    async def _ready(self, model_id: str) -> _Slot[M]:
        """The open slot of `model_id`, joining or starting its one load."""
        while True:
            slot = self._slots.get(model_id)
            if slot is not None and slot.model is not None and not slot.draining:
                self._slots.move_to_end(model_id)
                return slot
            if slot is not None and slot.draining:
                await self._next_change()  # closing: load it again once it is gone
                continue
            task = self._opening.get(model_id)
            if task is None:
                task = asyncio.get_running_loop().create_task(self._open(model_id))
                self._opening[model_id] = task
                task.add_done_callback(self._opened)
            # Shielded: a caller that gives up does not cancel the others' load.
            return await asyncio.shield(task)

    def _opened(self, task: asyncio.Task[_Slot[M]]) -> None:
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have given up
        for model_id, opening in list(self._opening.items()):
            if opening is task:
                del self._opening[model_id]

    async def _open(self, model_id: str) -> _Slot[M]:
        size = self._opener.size_bytes(model_id)
        if size > self.budget_bytes:
            raise self._refusal(model_id, {model_id: size})
        slot = await self._reserve(model_id, size)
        started = time.perf_counter()
        try:
            slot.model = await self._opener.open(model_id)
        except BaseException:
            del self._slots[model_id]
            self._changed()
            raise
        took = (time.perf_counter() - started) * 1000
        slot.last_used = self._clock()
        self._cold_start_ms[model_id] = took
        log.info("loaded %s in %.0f ms (%d MiB estimated)", model_id, took, mib(size))
        self._changed()
        if self._on_loaded is not None:
            try:
                self._on_loaded(model_id, took)
            except Exception:
                log.exception("reporting the cold start of %s failed", model_id)
        return slot

    async def _reserve(self, model_id: str, size: int) -> _Slot[M]:
        """Evict idle models until `size` more fits, waiting for leases to end if need be,
        then hold the room with a slot that is still opening."""
        while not self._fits(size):
            victim = self._victim()
            if victim is None:
                await self._next_change()  # every candidate is busy: wait for a drain
                continue
            log.info("evicting %s (least recently used) to load %s", victim, model_id)
            await self._close(victim, self._slots[victim])
        slot: _Slot[M] = _Slot(size)
        self._slots[model_id] = slot
        return slot

    def _fits(self, size: int) -> bool:
        count = len(self._slots) + self._closing_count
        return count < self.max_loaded and self.used_bytes() + size <= self.budget_bytes

    def _idle(self) -> list[tuple[str, _Slot[M]]]:
        """Open models that may be closed now: no lease, not pinned, not being unloaded;
        least recently used first."""
        return [
            (model_id, slot)
            for model_id, slot in self._slots.items()
            if slot.model is not None
            and not slot.leases
            and not slot.draining
            and not self._pinned[model_id]
        ]

    def _victim(self) -> str | None:
        idle = self._idle()
        return idle[0][0] if idle else None

    async def _close(self, model_id: str, slot: _Slot[M]) -> None:
        """Close an idle slot; its memory counts as held until the close has returned."""
        assert slot.model is not None and not slot.leases
        slot.draining = True
        if self._slots.get(model_id) is slot:
            del self._slots[model_id]
        self._closing_bytes += slot.size
        self._closing_count += 1
        try:
            await self._opener.close(model_id, slot.model)
        finally:
            self._closing_bytes -= slot.size
            self._closing_count -= 1
            self._changed()

    def _changed(self) -> None:
        self._change.set()
        self._change = asyncio.Event()

    async def _next_change(self) -> None:
        await self._change.wait()

    async def _unload_idle_forever(self) -> None:
        while True:
            try:
                await self.unload_idle()
            except Exception:
                log.exception("unloading idle models failed")
            due = [s.last_used + self._idle_timeout_s for _, s in self._idle()]
            wait = min(due) - self._clock() if due else self._idle_timeout_s
            await asyncio.sleep(max(wait, 0.01))
