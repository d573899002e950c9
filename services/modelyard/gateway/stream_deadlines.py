"""How long one model attempt may wait: for its first piece, and between pieces.

Two deadlines inside the call's own (`CallDeadline`, which bounds them all):

- first piece: a model that sends nothing for `first_token_timeout_ms` after
  the call reached its backend is given up on (`FirstTokenTimeout`), so a
  silent upstream is failed over instead of holding the call to its end;
- stall: a stream that had started and then sends nothing for
  `stall_timeout_ms` is given up on (`StreamStalled`).

Each comes from the model's own profile
(``backends.<name>.model_profiles.<model>``), else
``gateway.timeouts``; 0 means none but the call's deadline. Both are fixed by
the configuration: none is learned from the recent p95, because a model's time
to first token grows with the prompt (prefill) and with the queue in front of
it (the local engine serves one generation per model at a time; an OpenAI-wire
engine queues up to `max_queue` calls), so a deadline learned at light load
would fail good calls during a burst, count them against the deployment for
outlier ejection and push their load onto the fallbacks.

`PieceTimer` enforces them on one stream with a single timer handle for the
whole stream, re-armed only when the deadline it waits for moves earlier.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar

from modelyard.catalog_ids import catalog_id
from modelyard.config import ModelyardConfig

T = TypeVar("T")


@dataclass(frozen=True)
class PieceDeadlines:
    """One model's deadlines in seconds; None: none but the call's own."""

    first_piece_s: float | None = None
    stall_s: float | None = None


NO_PIECE_DEADLINES = PieceDeadlines()


def _seconds(ms: int) -> float | None:
    return ms / 1000 if ms else None


class StreamDeadlines:
    """Each catalog model's `PieceDeadlines`: its own where its profile sets them, else the
    gateway's."""

    def __init__(
        self,
        default: PieceDeadlines = NO_PIECE_DEADLINES,
        models: Mapping[str, PieceDeadlines] | None = None,
    ) -> None:
        self._default = default
        self._models = dict(models or {})

    @classmethod
    def from_config(cls, config: ModelyardConfig) -> StreamDeadlines:
        """`gateway.timeouts` for every model, each profile's own values over it."""
        timeouts = config.gateway.timeouts
        default = PieceDeadlines(
            _seconds(timeouts.first_token_timeout_ms), _seconds(timeouts.stall_timeout_ms)
        )
        models = {}
        for backend_name, backend in config.backends.items():
            for model, profile in backend.model_profiles.items():
                first, stall = profile.first_token_timeout_ms, profile.stall_timeout_ms
                if first is None and stall is None:
                    continue
                models[catalog_id(backend_name, model)] = PieceDeadlines(
                    default.first_piece_s if first is None else _seconds(first),
                    default.stall_s if stall is None else _seconds(stall),
                )
        return cls(default, models)

    def for_model(self, model_id: str) -> PieceDeadlines:
        """The deadlines of the model with catalog id `model_id`."""
        return self._models.get(model_id, self._default)


Which = Literal["call", "first_piece", "stall"]


class PieceTimeExpired(Exception):
    """A stream's time is up: the whole call's (`call`), or a piece deadline's.

    An engine's own `TimeoutError` stays its own; this is only ever the timer's.
    """

    def __init__(self, which: Which, seconds: float, pieces: int) -> None:
        super().__init__(which)
        self.which = which
        self.seconds = seconds  # the deadline that passed
        self.pieces = pieces  # the pieces that had arrived


class PieceTimer:
    """The deadlines of one stream, enforced on each wait for its next piece.

    `asyncio.timeout` around each wait would cost ~10 µs a piece, as much as
    the rest of the gateway's path. This holds one timer handle: a wait only
    notes when it started (one clock read), and the handle, when it fires,
    checks the deadline that now applies and either cancels the waiting task
    (which then raises `PieceTimeExpired`) or is re-armed for later. A piece
    deadline runs only while a wait is on: time the caller spends on a piece
    is not the model's. The whole call's deadline (`total_s`) runs throughout;
    when it passes while the caller reads, the next wait raises.
    """

    def __init__(self, total_s: float | None, deadlines: PieceDeadlines) -> None:
        self._loop = asyncio.get_running_loop()
        now = self._loop.time()
        self._total_s = total_s
        self._end = math.inf if total_s is None else now + total_s
        self._first_s = deadlines.first_piece_s
        self._stall_s = deadlines.stall_s
        self.pieces = 0  # pieces received so far
        self._wait_from = now
        self._waiting: asyncio.Task[object] | None = None
        self._expired: PieceTimeExpired | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._armed_at = math.inf
        first = now + self._first_s if self._first_s is not None else math.inf
        self._arm(min(first, self._end))

    def _arm(self, at: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._armed_at = at
        self._handle = None if at == math.inf else self._loop.call_at(at, self._fire)

    def _gap(self) -> tuple[Which, float | None]:
        return ("stall", self._stall_s) if self.pieces else ("first_piece", self._first_s)

    def _fire(self) -> None:
        self._handle = None
        self._armed_at = math.inf
        now = self._loop.time()
        if now >= self._end:
            assert self._total_s is not None
            self._expire(PieceTimeExpired("call", self._total_s, self.pieces))
            return
        which, gap = self._gap()
        due = self._wait_from + gap if gap is not None and self._waiting is not None else math.inf
        if now >= due:
            assert gap is not None
            self._expire(PieceTimeExpired(which, gap, self.pieces))
        else:  # a piece came meanwhile, or the caller holds one: check again then
            self._arm(min(due, self._end))

    def _expire(self, expired: PieceTimeExpired) -> None:
        self._expired = expired
        if self._waiting is not None:
            self._waiting.cancel()

    async def next(self, read: Callable[[], Awaitable[T]]) -> T:
        """What `read()` returns; `PieceTimeExpired` once a deadline has passed."""
        if self._expired is not None:
            raise self._expired
        task = asyncio.current_task()
        assert task is not None  # called from a coroutine
        now = self._loop.time()
        gap = self._stall_s if self.pieces else self._first_s
        if gap is not None and now + gap < self._armed_at:
            self._arm(min(now + gap, self._end))  # only when the deadline moved earlier
        cancelling = task.cancelling()
        self._wait_from = now
        self._waiting = task
        try:
            item = await read()
        except asyncio.CancelledError:
            # Ours only if no one else cancelled the task meanwhile (as asyncio.timeout).
            if self._expired is not None and task.uncancel() <= cancelling:
                raise self._expired from None
            raise
        finally:
            self._waiting = None
        self.pieces += 1
        return item

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
