"""Swaps: a route moved to another model with no request cut, as a watchable state machine.

A route is an alias's or a task type's (`route_keys`); an alias's may be
created by its first swap, a task type's comes from the configuration.

PREPARING (the target is known, servable, and offers every capability of
the model the alias has now) → WARMING (its first answer: a model not loaded
yet loads here, and the time is kept as `warm_ms`) → VALIDATING (the other
validation prompts, each answered with a finish reason within the timeout)
→ CANARY (a canary swap only: the target takes a growing share of the
calls, step by step, each step judged on live calls by `canary`; a
regression rolls back) → SWITCHED (one transaction stores the route and the swap: new calls take the
target; calls running keep the model they started on, since a gateway
resolves an alias once per call) → DRAINING (the grace period, for those
calls to finish; the previous model stays loaded) → DONE. A failure before
SWITCHED leaves the route as it was: FAILED, with the phase and the reason.
`rollback` puts the previous model back at any time after the switch, or
stops a swap before it (ROLLED_BACK either way).

One swap per route at a time. A hot-swap service stopped mid-swap comes back
with each route on exactly one model and each swap in a defined phase: one
stopped before its switch is FAILED (the route never moved), one stopped
while draining is DONE (the route moved; the grace period has passed since).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from modelyard.hotswap.arm_stats import ArmStats
from modelyard.hotswap.canary import CanaryPolicy, CanaryStep, split_for
from modelyard.hotswap.routes import RouteTable, current_split
from modelyard.hotswap.store import HotSwapStore
from modelyard.meters.instruments import Instrument
from modelyard.route_keys import describe, route_key
from modelyard.servable import servable
from modelyard_client.errors import (
    FailedPrecondition,
    InvalidRequest,
    MemoryBudgetExceeded,
    ModelyardError,
    NotFound,
)
from modelyard_client.v1 import common_pb2, hotswap_pb2

log = logging.getLogger(__name__)

Status = hotswap_pb2.SwapStatus
_NONE = Status()  # a swap not seen before: phase UNSPECIFIED
ENDED = frozenset({Status.PHASE_DONE, Status.PHASE_FAILED, Status.PHASE_ROLLED_BACK})
SWITCHED = frozenset({Status.PHASE_SWITCHED, Status.PHASE_DRAINING, Status.PHASE_DONE})
MAX_PROMPTS = 16
PROMPT_CHARS = 4096
DEFAULT_PROMPT = "Reply with the single word OK."


class Catalog(Protocol):
    """What a swap reads of the catalog: the gateway's `CatalogView` is one."""

    def get(self, model_id: str) -> common_pb2.ModelEntry: ...


class Validator(Protocol):
    """Asks a model one prompt; raises a `ModelyardError` unless it finishes in time."""

    async def answer(self, model: common_pb2.ModelEntry, prompt: str, timeout_s: float) -> None: ...


class Loader(Protocol):
    """Loads and unloads a model on the backends that serve it."""

    async def prepare(self, model: common_pb2.ModelEntry, keep_loaded: Sequence[str]) -> None:
        """Load `model` beside `keep_loaded`; `MemoryBudgetExceeded` when it cannot."""
        ...

    async def release(self, model: common_pb2.ModelEntry) -> None:
        """Unload `model` once its calls have finished."""
        ...


@dataclass(frozen=True)
class SwapSettings:
    """The configuration's `hot_swap:` defaults for what a request leaves unset."""

    enabled: bool = True
    grace_period_s: float = 30.0
    validation_timeout_s: float = 5.0
    canary: CanaryPolicy = field(default_factory=CanaryPolicy)
    standby: str = "keep_warm"  # or "unload": the previous version once drained
    when_budget_short: str = "refuse"  # or "drain_first"


def phase_name(phase: int) -> str:
    return Status.Phase.Name(phase).removeprefix("PHASE_").lower()  # type: ignore[arg-type]


class Swaps:
    def __init__(
        self,
        routes: RouteTable,
        store: HotSwapStore,
        catalog: Catalog,
        validator: Validator,
        settings: SwapSettings | None = None,
        loader: Loader | None = None,
        phases: Instrument | None = None,
    ) -> None:
        """`phases`: each phase a swap enters counted there (``modelyard.swap.phases``)."""
        self._phases = phases
        self._routes = routes
        self._store = store
        self._catalog = catalog
        self._validator = validator
        self._loader = loader
        self.settings = settings or SwapSettings()
        self._swaps: dict[str, Status] = {}
        self._active: dict[str, str] = {}  # route key -> the swap running on it
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._watchers: dict[str, set[asyncio.Queue[Status | None]]] = {}
        self._steps: dict[str, CanaryStep] = {}  # canary swap -> its step running
        for swap in store.load_swaps():
            recovered = self._recovered(swap)
            if recovered is not swap:
                store.put_swap(recovered)
                log.warning("swap %s: %s", swap.swap_id, recovered.error)
            self._swaps[swap.swap_id] = recovered

    def _recovered(self, swap: Status) -> Status:
        if swap.phase in ENDED:
            return swap
        if swap.phase == Status.PHASE_CANARY:
            route = self._routes.find(swap.alias, swap.task_type)
            if route is not None and route.split.id == swap.swap_id:
                self._routes.set_route(swap.alias, swap.task_type, route.model_id)  # the split ends
            why = (
                f"the hot-swap service restarted during the canary at {swap.canary_percent:g} %; "
                f"'{swap.from_model_id}' serves every call again"
            )
            return self._end(swap, Status.PHASE_ROLLED_BACK, why)
        if swap.switched_first and swap.phase in (Status.PHASE_WARMING, Status.PHASE_VALIDATING):
            self._routes.set_route(swap.alias, swap.task_type, swap.from_model_id)
            why = (
                f"the hot-swap service restarted during {phase_name(swap.phase)}, after a "
                f"drain-first switch; '{swap.from_model_id}' serves {_route_of(swap)} again"
            )
            return self._end(swap, Status.PHASE_ROLLED_BACK, why)
        if swap.phase in SWITCHED:
            why = "the hot-swap service restarted while draining; the route stays on the target"
            return self._end(swap, Status.PHASE_DONE, why)
        phase = phase_name(swap.phase)
        why = f"the hot-swap service stopped during {phase}; the route was not changed"
        return self._end(swap, Status.PHASE_FAILED, why)

    # ---- reading ------------------------------------------------------------

    def get(self, swap_id: str) -> Status:
        try:
            return self._swaps[swap_id]
        except KeyError:
            raise NotFound(f"no swap '{swap_id}'") from None

    def every(self) -> list[Status]:
        """Every swap kept (the store's, ended ones too), oldest first."""
        return list(self._swaps.values())

    def running(self) -> list[Status]:
        """The swaps that have not ended, one per route at most (the dashboard's)."""
        return [self._swaps[swap_id] for swap_id in self._active.values()]

    async def watch(self, swap_id: str) -> AsyncGenerator[Status, None]:
        """The swap's status now, then at every change, until it has ended."""
        status = self.get(swap_id)
        queue: asyncio.Queue[Status | None] = asyncio.Queue()  # None: the service stops
        self._watchers.setdefault(swap_id, set()).add(queue)
        try:
            yield status
            while status.phase not in ENDED:
                item = await queue.get()
                if item is None:
                    return
                status = item
                yield status
        finally:
            self._watchers.get(swap_id, set()).discard(queue)

    # ---- starting -----------------------------------------------------------

    def check_idle(self, alias: str = "", task_type: int = 0) -> None:
        """FailedPrecondition when a swap is running on the route of `alias` or `task_type`."""
        running = self._active.get(route_key(alias, task_type))
        if running is not None:
            phase = phase_name(self._swaps[running].phase)
            raise FailedPrecondition(
                f"{_route_of(self._swaps[running])} has swap {running} running ({phase}); "
                "wait for it to end or roll it back"
            )

    def start(self, request: hotswap_pb2.SwapRequest) -> Status:
        """Check the request, then run the swap in the background; its first status."""
        if not self.settings.enabled:
            raise FailedPrecondition("swaps are turned off (hot_swap.enabled: false)")
        key = route_key(request.alias, request.task_type)  # a bad alias is refused here
        name = _route_of(request)
        prompts = list(request.validation_prompts) or [DEFAULT_PROMPT]
        if len(prompts) > MAX_PROMPTS:
            raise InvalidRequest(
                f"validation_prompts has {len(prompts)} entries; the limit is {MAX_PROMPTS}",
                field="validation_prompts",
            )
        for i, prompt in enumerate(prompts):
            if not prompt.strip() or len(prompt) > PROMPT_CHARS:
                raise InvalidRequest(
                    f"validation_prompts[{i}] must be 1-{PROMPT_CHARS} characters, not blank",
                    field=f"validation_prompts[{i}]",
                )
        self.check_idle(request.alias, request.task_type)
        target = self._catalog.get(request.target_model_id)  # ModelNotFound names it
        current = self._routes.find(request.alias, request.task_type)
        if current is not None:
            if current_split(current):
                raise FailedPrecondition(
                    f"{name} is split by A/B test {current.split.id}: "
                    "stop it first (stopping it can promote its winner)"
                )
            if current.model_id == target.id:
                raise FailedPrecondition(f"{name} is already served by '{target.id}'")
            check_capabilities(self._catalog, name, current.model_id, target)
        elif request.task_type:
            raise FailedPrecondition(
                f"{name} has no route: a task type's route comes from the configuration "
                "(hot_swap.task_routes)"
            )
        elif request.canary:
            raise FailedPrecondition(
                f"{name} has no route yet: a canary swap compares the target "
                "with the model serving now"
            )
        status = Status(
            swap_id=uuid.uuid4().hex[:16],
            alias=request.alias,
            task_type=request.task_type,
            from_model_id=current.model_id if current is not None else "",
            to_model_id=target.id,
            phase=Status.PHASE_PREPARING,
            canary=request.canary,
        )
        status.started_at.GetCurrentTime()
        self._store.put_swap(status)
        self._publish(status)  # no watcher yet: kept, and its phase counted
        self._active[key] = status.swap_id
        grace_s = request.grace_period_ms / 1000 or self.settings.grace_period_s
        timeout_s = request.validation_timeout_ms / 1000 or self.settings.validation_timeout_s
        task = asyncio.create_task(self._run(status.swap_id, prompts, grace_s, timeout_s))
        self._tasks[status.swap_id] = task
        log.info(
            "swap %s: %s %s → %s",
            status.swap_id,
            name,
            status.from_model_id or "(new)",
            status.to_model_id,
        )
        return status

    # ---- running ------------------------------------------------------------

    async def _run(
        self, swap_id: str, prompts: list[str], grace_s: float, timeout_s: float
    ) -> None:
        status = self._swaps[swap_id]
        try:
            target = self._catalog.get(status.to_model_id)
            if not servable(target):
                raise FailedPrecondition(
                    f"'{target.id}' cannot be sent requests (health "
                    f"{common_pb2.HealthStatus.Name(target.health)}{_reason(target)})"
                )
            if await self._budget_short(status, target):
                await self._switch_first(swap_id, target, prompts, grace_s, timeout_s)
                return
            await self._validate(swap_id, target, prompts, timeout_s)
            if status.canary and not await self._canary(swap_id):
                return  # rolled back, recorded
            switched = self._next(swap_id, Status.PHASE_SWITCHED)
            if switched.canary:
                switched.canary_percent = 100  # the target takes every call
            self._routes.set_route(
                status.alias, status.task_type, status.to_model_id, swap=switched
            )
            self._publish(switched)
            await self._drain(swap_id, grace_s)
        except asyncio.CancelledError:
            raise  # rollback or the service stopping: each records what it did
        except ModelyardError as exc:
            phase = phase_name(self._swaps[swap_id].phase)
            self._finish(swap_id, Status.PHASE_FAILED, f"{phase}: {exc.message}")
            log.warning("swap %s failed in %s: %s", swap_id, phase, exc.message)
        except Exception as exc:  # not the hierarchy's: a bug, or the store failing
            phase = phase_name(self._swaps[swap_id].phase)
            log.exception("swap %s failed in %s", swap_id, phase)
            with contextlib.suppress(Exception):  # logged above; the route is freed anyway
                error = f"{phase}: internal error ({type(exc).__name__})"
                self._finish(swap_id, Status.PHASE_FAILED, error)
        finally:
            self._tasks.pop(swap_id, None)

    async def _validate(
        self, swap_id: str, target: common_pb2.ModelEntry, prompts: list[str], timeout_s: float
    ) -> None:
        """WARMING (the first answer, timed) then VALIDATING (the other prompts)."""
        self._move(swap_id, Status.PHASE_WARMING)
        started = time.perf_counter()
        await self._validator.answer(target, prompts[0], timeout_s)
        warm_ms = (time.perf_counter() - started) * 1000
        self._move(swap_id, Status.PHASE_VALIDATING, warm_ms=warm_ms)
        for prompt in prompts[1:]:
            await self._validator.answer(target, prompt, timeout_s)

    async def _drain(self, swap_id: str, grace_s: float) -> None:
        """DRAINING for the grace period; then the previous version is unloaded or kept
        warm (`standby`), and the swap is DONE."""
        status = self._move(swap_id, Status.PHASE_DRAINING)
        await asyncio.sleep(grace_s)
        note = ""
        if self.settings.standby == "unload" and self._loader and status.from_model_id:
            try:
                await self._loader.release(self._catalog.get(status.from_model_id))
            except ModelyardError as exc:
                note = f"'{status.from_model_id}' was not unloaded: {exc.message}"
                log.warning("swap %s: %s", swap_id, note)
        self._finish(swap_id, Status.PHASE_DONE, note)

    async def _budget_short(self, status: Status, target: common_pb2.ModelEntry) -> bool:
        """Load the target beside the current version; True when the memory budget cannot
        hold both and the swap is to switch first (`when_budget_short: drain_first`)."""
        if self._loader is None:
            return False
        keep = [status.from_model_id] if status.from_model_id else []
        try:
            await self._loader.prepare(target, keep)
        except MemoryBudgetExceeded as exc:
            if status.canary:
                raise FailedPrecondition(
                    f"{exc.message}; a canary swap serves both versions at once"
                ) from None
            if self.settings.when_budget_short != "drain_first":
                raise FailedPrecondition(
                    f"{exc.message} (hot_swap.when_budget_short: refuse; drain_first would "
                    "switch first and load the target once the current version drains)"
                ) from None
            return True
        return False

    async def _switch_first(
        self,
        swap_id: str,
        target: common_pb2.ModelEntry,
        prompts: list[str],
        grace_s: float,
        timeout_s: float,
    ) -> None:
        """The budget holds one version: switch, let the target load once the current
        version's calls have finished, then validate; a failure switches back."""
        switched = self._next(swap_id, Status.PHASE_SWITCHED)
        switched.switched_first = True
        self._routes.set_route(
            switched.alias, switched.task_type, switched.to_model_id, swap=switched
        )
        self._publish(switched)
        log.info(
            "swap %s: the memory budget holds one of '%s' and '%s': switched first",
            swap_id,
            switched.from_model_id,
            switched.to_model_id,
        )
        try:
            # The first answer waits for the previous version to drain and unload.
            await self._validate(swap_id, target, prompts, grace_s + timeout_s)
        except ModelyardError as exc:
            phase = phase_name(self._swaps[swap_id].phase)
            ended = self._end(
                self._swaps[swap_id],
                Status.PHASE_ROLLED_BACK,
                f"{phase} after a drain-first switch: {exc.message}; "
                f"'{switched.from_model_id}' serves {_route_of(switched)} again",
            )
            self._routes.set_route(
                switched.alias, switched.task_type, switched.from_model_id, swap=ended
            )
            self._publish(ended)
            self._release(ended)
            log.warning("swap %s rolled back: %s", swap_id, ended.error)
            return
        await self._drain(swap_id, 0.0)  # the previous version has drained already

    async def _canary(self, swap_id: str) -> bool:
        """Run the canary's steps below 100 %; whether the swap may switch."""
        policy = self.settings.canary
        for percent in (p for p in policy.steps if p < 100):
            status = self._next(swap_id, Status.PHASE_CANARY, canary_percent=percent)
            split = split_for(swap_id, status.from_model_id, status.to_model_id, percent)
            step = CanaryStep(
                percent,
                old=ArmStats("old", status.from_model_id),
                new=ArmStats("new", status.to_model_id),
            )
            self._steps[swap_id] = step
            # The split and the swap's phase in one transaction.
            self._routes.set_route(
                status.alias, status.task_type, status.from_model_id, swap=status, split=split
            )
            self._publish(status)
            decided = await step.judged(policy)
            status = self._next(swap_id, Status.PHASE_CANARY)
            status.steps.append(decided)
            log.info("canary swap %s: %s (%s)", swap_id, decided.decision, decided.reason)
            if decided.decision == "advance":
                self._store.put_swap(status)
                self._publish(status)
                continue
            if decided.decision == "rollback":
                ended = self._end(status, Status.PHASE_ROLLED_BACK, decided.reason)
                self._routes.set_route(
                    status.alias, status.task_type, status.from_model_id, swap=ended
                )
                self._publish(ended)
                self._release(ended)
                return False
            self._store.put_swap(status)  # held: the split stays until a rollback
            self._publish(status)
            await asyncio.Event().wait()
        self._steps.pop(swap_id, None)
        return True

    def record(self, outcome: hotswap_pb2.ArmOutcome) -> bool:
        """Count one call a canary's split routed; False when no canary step has that split."""
        step = self._steps.get(outcome.split_id)
        if step is None:
            return False
        step.record(outcome)
        return True

    def _next(self, swap_id: str, phase: int, **fields: float) -> Status:
        status = Status()
        status.CopyFrom(self._swaps[swap_id])
        status.phase = phase  # type: ignore[assignment]
        for name, value in fields.items():
            setattr(status, name, value)
        return status

    def _move(self, swap_id: str, phase: int, **fields: float) -> Status:
        status = self._next(swap_id, phase, **fields)
        self._store.put_swap(status)
        self._publish(status)
        return status

    def _finish(self, swap_id: str, phase: int, error: str) -> Status:
        status = self._end(self._swaps[swap_id], phase, error)
        try:
            self._store.put_swap(status)
        finally:  # ended even when its record cannot be written: the route is free again
            self._publish(status)
            self._release(status)
        return status

    def _release(self, status: Status) -> None:
        """The swap has ended: the route is free for the next, its canary step gone."""
        self._steps.pop(status.swap_id, None)
        key = route_key(status.alias, status.task_type)
        if self._active.get(key) == status.swap_id:
            del self._active[key]

    @staticmethod
    def _end(swap: Status, phase: int, error: str) -> Status:
        status = Status()
        status.CopyFrom(swap)
        status.phase = phase  # type: ignore[assignment]
        status.error = error
        status.finished_at.GetCurrentTime()
        return status

    def _publish(self, status: Status) -> None:
        if (
            self._phases is not None
            and self._swaps.get(status.swap_id, _NONE).phase != status.phase
        ):
            self._phases.add(1, (("modelyard.swap.phase", phase_name(status.phase)),))
        self._swaps[status.swap_id] = status
        for queue in self._watchers.get(status.swap_id, ()):
            queue.put_nowait(status)

    # ---- rolling back, stopping --------------------------------------------

    async def rollback(self, swap_id: str) -> Status:
        """Put the previous model back (or stop the swap before its switch)."""
        status = self.get(swap_id)
        if status.phase in (Status.PHASE_FAILED, Status.PHASE_ROLLED_BACK):
            raise FailedPrecondition(
                f"swap {swap_id} has ended {phase_name(status.phase)}: nothing to roll back"
            )
        if _has_switched(status):
            if not status.from_model_id:
                raise FailedPrecondition(
                    f"swap {swap_id} created {_route_of(status)}: there is no previous "
                    "model to put back"
                )
            route = self._routes.find(status.alias, status.task_type)
            if route is None or route.model_id != status.to_model_id:
                now = route.model_id if route is not None else "nothing"
                raise FailedPrecondition(
                    f"{_route_of(status)} has moved on since swap {swap_id} (it is served "
                    f"by '{now}'): roll back the later swap instead"
                )
        # No await before this cancel: the swap is where `status` says, and a swap
        # not switched yet is stopped at an await before its switch.
        task = self._tasks.get(swap_id)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if status.phase == Status.PHASE_CANARY:
            ended = self._end(
                self._swaps[swap_id],
                Status.PHASE_ROLLED_BACK,
                f"stopped during the canary at {status.canary_percent:g} %: "
                f"'{status.from_model_id}' serves every call again",
            )
            self._routes.set_route(status.alias, status.task_type, status.from_model_id, swap=ended)
            self._publish(ended)
            self._release(ended)
            return ended
        if not _has_switched(status):
            return self._finish(
                swap_id,
                Status.PHASE_ROLLED_BACK,
                "stopped before the switch: the route is unchanged",
            )
        ended = self._end(
            self._swaps[swap_id],
            Status.PHASE_ROLLED_BACK,
            f"'{status.from_model_id}' serves {_route_of(status)} again",
        )
        self._routes.set_route(status.alias, status.task_type, status.from_model_id, swap=ended)
        self._publish(ended)
        self._release(ended)
        log.info("swap %s rolled back: %s", swap_id, ended.error)
        return ended

    async def close(self) -> None:
        """Stop the running swaps and end their watches; a restart records each swap as
        `_recovered` says."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for queues in self._watchers.values():
            for queue in queues:
                queue.put_nowait(None)


def _reason(model: common_pb2.ModelEntry) -> str:
    return f": {model.health_reason}" if model.health_reason else ""


def check_capabilities(
    catalog: Catalog, route: str, current_id: str, target: common_pb2.ModelEntry
) -> None:
    """FailedPrecondition when `target` lacks a capability the route's current model has
    (`route` names it: "alias 'chat'")."""
    try:
        current = catalog.get(current_id)
    except ModelyardError:
        return  # the current model left the catalog: nothing to keep
    missing = sorted(set(current.capabilities) - set(target.capabilities))
    if missing:
        names = ", ".join(
            common_pb2.Capability.Name(c).removeprefix("CAPABILITY_").lower() for c in missing
        )
        raise FailedPrecondition(
            f"'{target.id}' lacks what {route} serves with '{current_id}': {names}"
        )


def _has_switched(status: Status) -> bool:
    """Whether the route points at the swap's target (a drain-first switch comes early)."""
    return status.phase in SWITCHED or (
        status.switched_first and status.phase in (Status.PHASE_WARMING, Status.PHASE_VALIDATING)
    )


def _route_of(swap: Status | hotswap_pb2.SwapRequest) -> str:
    """How messages name the swap's route: "alias 'chat'", "task type code"."""
    return describe(hotswap_pb2.Route(alias=swap.alias, task_type=swap.task_type))
