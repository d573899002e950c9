"""Admission: how many calls run at once, how many may wait, and what happens to the rest.

An `Admission` lets at most `max_concurrency` calls hold a slot and at most
`max_queue` more wait for one, first come first served. A call that finds
both full is refused at once with `Overloaded` (RESOURCE_EXHAUSTED with a
retry delay): it is never left waiting without bound, and never dropped
without an answer. Two are built (`modelyard.assembly`): one per OpenAI-wire
upstream, in its engine (``backends.<name>.max_concurrency`` / ``max_queue``),
and one for the whole gateway with no queue (``gateway.max_in_flight``).

The retry delay is an estimate of when room frees up: the mean time a call
holds its slot (an exponential average, 1 s before any call has finished)
times the rounds the queue needs to drain, ``1 + waiting / max_concurrency``,
kept within [0.1 s, 60 s].

On the path of every call, so it is kept small (under a microsecond here):
entering a free slot is a comparison, a count and a clock read, and nothing
suspends. A waiting call waits on a future of its own, in a FIFO; a slot
given back passes straight to the first waiter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType

from modelyard_client.errors import Overloaded

log = logging.getLogger(__name__)

# The defaults of the configuration keys (`modelyard.config` reads them from here).
DEFAULT_MAX_CONCURRENCY = 256  # backends.<name>.max_concurrency: calls one upstream runs at once
DEFAULT_MAX_QUEUE = 512  # backends.<name>.max_queue: calls waiting for one of its slots
DEFAULT_MAX_IN_FLIGHT = 2048  # gateway.max_in_flight: calls one gateway holds, all backends

DEFAULT_RETRY_AFTER_S = 1.0  # before any call has finished, there is nothing to estimate from
MIN_RETRY_AFTER_S = 0.1
MAX_RETRY_AFTER_S = 60.0
_HOLD_WEIGHT = 0.1  # weight of the latest call in the mean hold time
SHED_LOG_INTERVAL_S = 10.0  # shedding is logged once per interval, with the count since


class Admission:
    """The slots of one upstream (or of the whole gateway) and the queue in front of them.

    `scope` travels with `Overloaded` (``upstream:custom``, ``gateway``);
    `label` starts its message (``upstream 'custom'``); `limits` names the
    settings to raise (``backends.custom.max_concurrency=256, max_queue=512``).
    """

    def __init__(
        self,
        scope: str,
        label: str,
        limits: str,
        max_concurrency: int,
        max_queue: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_concurrency < 1 or max_queue < 0:
            raise ValueError(f"{label}: max_concurrency must be >= 1 and max_queue >= 0")
        self.scope = scope
        self.label = label
        self.limits = limits
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self._clock = clock
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.running = 0  # calls holding a slot
        self.shed = 0  # calls refused since start
        self.mean_hold_s: float | None = None
        self._shed_logged = 0  # `shed` when it was last logged
        self._logged_at = -SHED_LOG_INTERVAL_S

    @classmethod
    def for_upstream(cls, backend: str, max_concurrency: int, max_queue: int) -> Admission:
        """The admission of the configured backend `backend`'s upstream: scope
        ``upstream:<backend>``, its refusals naming the two settings to raise."""
        return cls(
            f"upstream:{backend}",
            f"upstream '{backend}'",
            f"backends.{backend}.max_concurrency={max_concurrency}, max_queue={max_queue}",
            max_concurrency,
            max_queue,
        )

    def refused(self, exc: BaseException) -> bool:
        """Whether `exc` is this admission's refusal (another's, of the same scope, counts)."""
        return isinstance(exc, Overloaded) and exc.scope == self.scope

    def slot(self) -> Slot:
        """``async with admission.slot():`` around the call; raises `Overloaded` when full."""
        return Slot(self)

    @property
    def waiting(self) -> int:
        """Calls waiting for a slot."""
        return len(self._waiters)

    def retry_after_s(self) -> float:
        """When to come back: the mean hold time times the rounds the queue needs to drain."""
        hold = DEFAULT_RETRY_AFTER_S if self.mean_hold_s is None else self.mean_hold_s
        rounds = 1 + self.waiting / self.max_concurrency
        return min(max(hold * rounds, MIN_RETRY_AFTER_S), MAX_RETRY_AFTER_S)

    def refuse(self) -> Overloaded:
        """The error for a call that finds every slot taken and the queue full (and count it)."""
        self.shed += 1
        now = self._clock()
        if now - self._logged_at >= SHED_LOG_INTERVAL_S:
            log.warning(
                "%s is full (%d running, %d waiting; %s): refused %d call(s) with "
                "RESOURCE_EXHAUSTED since the last report",
                self.label,
                self.running,
                self.waiting,
                self.limits,
                self.shed - self._shed_logged,
            )
            self._logged_at, self._shed_logged = now, self.shed
        return Overloaded(
            f"{self.label} is at capacity: {self.running} call(s) running and "
            f"{self.waiting} waiting ({self.limits})",
            self.retry_after_s(),
            self.scope,
        )

    async def _enter(self) -> float:
        if self.running < self.max_concurrency and not self._waiters:
            self.running += 1
            return self._clock()
        if len(self._waiters) >= self.max_queue:
            raise self.refuse()
        turn = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        try:
            await turn  # resolved by `_pass_on`: the slot is this call's from then on
        except asyncio.CancelledError:
            if turn.cancelled():  # cancelled while waiting: its place is given up
                with contextlib.suppress(ValueError):
                    self._waiters.remove(turn)
            else:  # cancelled just after its turn came: the slot goes to the next one
                self._pass_on()
            raise
        return self._clock()

    def _leave(self, since: float) -> None:
        held = self._clock() - since
        mean = self.mean_hold_s
        self.mean_hold_s = held if mean is None else mean + _HOLD_WEIGHT * (held - mean)
        self._pass_on()

    def _pass_on(self) -> None:
        """Give a slot to the first call still waiting, or free it."""
        while self._waiters:
            turn = self._waiters.popleft()
            if not turn.done():
                turn.set_result(None)  # `running` stays: the slot changes hands
                return
        self.running -= 1


def gateway_admission(max_in_flight: int = DEFAULT_MAX_IN_FLIGHT) -> Admission:
    """The gateway's own bound: `max_in_flight` calls at once, none waiting."""
    return Admission(
        "gateway", "this gateway", f"gateway.max_in_flight={max_in_flight}", max_in_flight, 0
    )


class Slot:
    """One call's place: taken on entry (waiting if it must and may), given back on exit."""

    __slots__ = ("_admission", "_since")

    def __init__(self, admission: Admission) -> None:
        self._admission = admission
        self._since = 0.0

    async def __aenter__(self) -> None:
        self._since = await self._admission._enter()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._admission._leave(self._since)
