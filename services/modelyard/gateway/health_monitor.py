"""The gateway's health checks of the deployments it calls, and what it does when one fails.

Every `monitoring.health_check_interval` (30 s) `HealthMonitor` looks at each
deployment of each model in the gateway's live catalog copy:

- the backend's own health first (`BackendService.Health`, one call per endpoint
  a round, nothing generated): a backend that does not answer fails every
  deployment at it, with the error;
- then a probe that generates (`max_tokens` 1 on "ping", bounded by
  `PROBE_TIMEOUT_S`) for each deployment whose backend answers UNHEALTHY or
  UNAVAILABLE (its status is the worst of the engines it hosts: the probe says
  which of its models are hit; its reason joins a failed probe's), whose live
  window (`performance.py`, the gateway's real calls) shows an error rate of
  `PASSIVE_ERROR_RATE` or more, or that is tripped already. A model whose backend
  is well and whose calls do not fail costs no token.

A deployment failing `TRIP_AFTER` probes in a row trips: the model's registry
entry goes UNHEALTHY (`RegistryService.UpdateHealth`, the reason naming the
probe's error; DEGRADED while another deployment of it still passes), which
every catalog watcher sees, and `monitoring.recovery`'s actions run in order:

- ``eject``: the balancer holds the deployment out (`Balancer.hold_out`) until a
  probe passes, whatever its catalog health says;
- ``reload``: the backend unloads then loads the model (`BackendService.Unload`,
  `Load`): a local model's weights are read again; an API engine's load checks
  its upstream still offers the model;
- ``reconnect``: the next call to a remote backend opens a new channel
  (`BackendPool.reconnect`), not waiting out gRPC's reconnect backoff; skipped for a
  backend in this process;
- ``standby``: every route whose active model it is moves to its standby, the
  first healthy one of its fallbacks, through the hot-swap service's own `Swap`
  (`gateway/standby.py`), once every deployment of the model is tripped; the
  route stays there when the model comes back (the swap can be rolled back).
  Refused at configuration time without hot-swap.

Each action's outcome is logged and counted (`modelyard.recoveries`). A tripped
deployment whose probe passes is let back in, and its model, once no deployment
of it is tripped, goes HEALTHY again. The monitor writes only the health it
caused: an entry it never tripped keeps what its backend announced. A write that
fails is logged and sent again the next round.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass

from modelyard.gateway.backend_pool import BackendPool
from modelyard.gateway.balancing import Balancer
from modelyard.gateway.catalog_view import CatalogView
from modelyard.gateway.performance import PerformanceTracker
from modelyard.gateway.standby import Standby
from modelyard.meters.instruments import Instrument
from modelyard.security.channels import PLAINTEXT, InternalChannels
from modelyard.servable import servable_health
from modelyard.telemetry import metadata_with_trace
from modelyard_client.channel import CHANNEL_OPTIONS
from modelyard_client.errors import ModelyardError, remote_errors
from modelyard_client.v1 import backend_pb2, common_pb2, registry_pb2, registry_pb2_grpc

log = logging.getLogger(__name__)

# `monitoring.recovery`, in any order
RECOVERY_ACTIONS = ("eject", "reload", "reconnect", "standby")
TRIP_AFTER = 2  # failed probes in a row that trip a deployment
PASSIVE_ERROR_RATE = 0.5  # a live window failing this share of calls gets a real probe
HEALTH_TIMEOUT_S = 5.0  # one BackendService.Health call
PROBE_TIMEOUT_S = 10.0  # one max_tokens=1 generation
RECOVERY_TIMEOUT_S = 300.0  # one Unload or Load
SEND_TIMEOUT_S = 5.0  # one UpdateHealth
_NOTHING_TO = {
    "reconnect": "nothing to reconnect",
    "standby": "no route it alone serves",
}

# Writes one model's health with its reason; raising means it was not written.
Send = Callable[[str, common_pb2.HealthStatus.ValueType, str], Awaitable[object]]
Key = tuple[str, str]  # (model id, deployment endpoint)


@dataclass
class _DeploymentState:
    failures: int = 0  # failed probes in a row
    tripped: bool = False
    reason: str = ""  # the last failed probe's error


class HealthMonitor:
    """Probes the deployments of `catalog`'s models every `interval_s` (see the module
    docstring). `recovery`: the actions run when one trips, in order; `recoveries`:
    the counter of their outcomes."""

    def __init__(
        self,
        catalog: CatalogView,
        pool: BackendPool,
        tracker: PerformanceTracker,
        balancer: Balancer,
        interval_s: float,
        recovery: Sequence[str] = ("eject",),
        recoveries: Instrument | None = None,
        standby: Standby | None = None,
    ) -> None:
        unknown = [a for a in recovery if a not in RECOVERY_ACTIONS]
        if unknown:
            raise ValueError(f"unknown recovery action(s) {unknown}; use {RECOVERY_ACTIONS}")
        if "standby" in recovery and standby is None:
            raise ValueError("recovery 'standby' moves routes through hot-swap: none here")
        self.standby = standby
        self.catalog = catalog
        self.pool = pool
        self.tracker = tracker
        self.balancer = balancer
        self.interval_s = interval_s
        self.recovery = tuple(recovery)
        self.recoveries = recoveries
        self.rounds = 0  # rounds finished since start
        self._states: dict[Key, _DeploymentState] = {}
        self._written: dict[str, common_pb2.HealthStatus.ValueType] = {}  # what we set

    async def run(self, registry_address: str, channels: InternalChannels = PLAINTEXT) -> None:
        """Check every `interval_s`, writing health to the registry at `registry_address`,
        until cancelled."""
        async with channels.open(registry_address, CHANNEL_OPTIONS) as channel:
            stub = registry_pb2_grpc.RegistryServiceStub(channel)

            async def send(
                model_id: str, health: common_pb2.HealthStatus.ValueType, reason: str
            ) -> object:
                with remote_errors():
                    return await stub.UpdateHealth(
                        registry_pb2.UpdateHealthRequest(id=model_id, health=health, reason=reason),
                        metadata=metadata_with_trace(),
                        timeout=SEND_TIMEOUT_S,
                    )

            while True:
                await asyncio.sleep(self.interval_s)
                await self.check(send)

    def tripped(self, model_id: str, endpoint: str) -> bool:
        state = self._states.get((model_id, endpoint))
        return state is not None and state.tripped

    def tripped_whole(self, model_id: str) -> bool:
        """Whether every deployment of `model_id` the catalog lists is tripped."""
        entry = self.catalog.find(model_id)
        return (
            entry is not None
            and bool(entry.deployments)
            and all(self.tripped(model_id, d.endpoint) for d in entry.deployments)
        )

    async def check(self, send: Send) -> None:
        """One round: every deployment probed, trips and recoveries acted on, the health
        that changed written with `send`."""
        models = [m for m in self.catalog.models() if m.deployments]
        endpoints = {d.endpoint: d for m in models for d in m.deployments}
        answers = await asyncio.gather(*(self._backend_health(d) for d in endpoints.values()))
        backends = dict(zip(endpoints, answers, strict=True))
        seen: set[Key] = set()
        probes: list[tuple[common_pb2.ModelEntry, common_pb2.Deployment, str]] = []
        for model in models:
            for d in model.deployments:
                key = (model.id, d.endpoint)
                seen.add(key)
                answer = backends[d.endpoint]
                if isinstance(answer, ModelyardError):  # not reached: nothing to probe
                    await self._outcome(model, d, f"health check: {answer.message}")
                elif not servable_health(answer.status):
                    status = common_pb2.HealthStatus.Name(answer.status)
                    said = f"backend '{answer.backend}' reports {status}: {answer.reason or '-'}"
                    probes.append((model, d, said))
                elif self.tripped(*key) or self._failing_live(model.id, d.endpoint):
                    probes.append((model, d, ""))
                else:
                    await self._outcome(model, d, None)
        results = await asyncio.gather(*(self._probe(m, d) for m, d, _ in probes))
        for (model, d, said), problem in zip(probes, results, strict=True):
            await self._outcome(model, d, problem and "; ".join(filter(None, (problem, said))))
        for key in set(self._states) - seen:  # left the catalog: forget it
            self.balancer.let_in(*key)
            del self._states[key]
        for model in models:
            await self._write_health(model, send)
        self._written = {m: h for m, h in self._written.items() if self.catalog.find(m)}
        self.rounds += 1

    # ---- probing -------------------------------------------------------------

    async def _backend_health(
        self, deployment: common_pb2.Deployment
    ) -> backend_pb2.BackendHealthResponse | ModelyardError:
        """The backend's answer at the deployment's endpoint, or why there was none."""
        try:
            return await self.pool.health(deployment, HEALTH_TIMEOUT_S)
        except ModelyardError as err:
            return err

    def _failing_live(self, model_id: str, endpoint: str) -> bool:
        figures = self.tracker.deployment_figures(model_id).get(endpoint)
        return figures is not None and figures.error_rate >= PASSIVE_ERROR_RATE

    async def _probe(
        self, model: common_pb2.ModelEntry, deployment: common_pb2.Deployment
    ) -> str | None:
        """A one-token generation on the deployment; its error, None when it answered."""
        request = backend_pb2.InferRequest(
            model_id=model.id,
            input=common_pb2.Input(text="ping"),
            params=common_pb2.GenerationParams(max_tokens=1),
            request_id="health-probe",
        )
        try:
            stream = self.pool.infer_stream(deployment, request, PROBE_TIMEOUT_S)
            async with aclosing(stream) as chunks:
                async for _ in chunks:
                    pass
        except ModelyardError as err:
            return f"probe: {err.message}"
        return None

    # ---- tripping and recovering ----------------------------------------------

    async def _outcome(
        self, model: common_pb2.ModelEntry, deployment: common_pb2.Deployment, problem: str | None
    ) -> None:
        key = (model.id, deployment.endpoint)
        state = self._states.setdefault(key, _DeploymentState())
        if problem is None:
            state.failures = 0
            if state.tripped:
                state.tripped = False
                self.balancer.let_in(*key)
                log.info("health: %s at %s passes again", model.id, deployment.endpoint)
            return
        state.failures += 1
        state.reason = problem
        if state.tripped or state.failures < TRIP_AFTER:
            return
        state.tripped = True
        log.warning(
            "health: %s at %s failed %d checks in a row (%s); recovery: %s",
            model.id,
            deployment.endpoint,
            state.failures,
            problem,
            ", ".join(self.recovery) or "none",
        )
        for action in self.recovery:
            await self._recover(action, model, deployment)

    async def _recover(
        self, action: str, model: common_pb2.ModelEntry, deployment: common_pb2.Deployment
    ) -> None:
        try:
            skipped = False
            if action == "eject":
                self.balancer.hold_out(model.id, deployment.endpoint)
            elif action == "reconnect":
                skipped = not await self.pool.reconnect(deployment.endpoint)
            elif action == "standby":
                assert self.standby is not None
                # While another deployment of the model passes, its routes stay.
                skipped = not self.tripped_whole(model.id) or not await self.standby.move(
                    model.id, self.tripped_whole
                )
            else:  # reload
                await self.pool.unload(deployment, model.id, RECOVERY_TIMEOUT_S)
                await self.pool.load(deployment, model.id, timeout_s=RECOVERY_TIMEOUT_S)
        except ModelyardError as err:
            outcome = "failed"
            log.warning(
                "health: recovery %s of %s at %s failed: %s",
                action,
                model.id,
                deployment.endpoint,
                err.message,
            )
        else:
            outcome = "skipped" if skipped else "ok"
            log.info(
                "health: recovery %s of %s at %s %s",
                action,
                model.id,
                deployment.endpoint,
                f"skipped: {_NOTHING_TO[action]}" if skipped else "done",
            )
        if self.recoveries is not None:
            attributes = (
                ("modelyard.recovery.action", action),
                ("modelyard.recovery.outcome", outcome),
            )
            self.recoveries.add(1, attributes)

    async def _write_health(self, model: common_pb2.ModelEntry, send: Send) -> None:
        states = [self._states[(model.id, d.endpoint)] for d in model.deployments]
        tripped = [(d, s) for d, s in zip(model.deployments, states, strict=True) if s.tripped]
        if not tripped:
            if model.id not in self._written:
                return  # never tripped by us: the backend's announced health stands
            health, reason = common_pb2.HEALTH_STATUS_HEALTHY, "passes its health checks"
        else:
            whole = len(tripped) == len(states)
            health = (
                common_pb2.HEALTH_STATUS_UNHEALTHY if whole else common_pb2.HEALTH_STATUS_DEGRADED
            )
            reason = "; ".join(f"{d.endpoint}: {s.reason}" for d, s in tripped)
        if self._written.get(model.id) == health and model.health == health:
            return
        try:
            await send(model.id, health, reason)
        except Exception as exc:  # whatever it was, the next round writes again
            why = exc.message if isinstance(exc, ModelyardError) else repr(exc)
            log.warning("health: %s's health did not reach the registry: %s", model.id, why)
            return
        if health == common_pb2.HEALTH_STATUS_HEALTHY:
            self._written.pop(model.id, None)
        else:
            self._written[model.id] = health
