"""Each service's ``grpc.health.v1`` status, following what it can serve.

A load balancer, kubelet or an operator asks a process's health service about one of
its services by name. At start every service is SERVING (`runtime.start_server`); from
then on `ServiceHealth` checks, every `monitoring.health_check_interval`:

- ``modelyard.v1.BackendService``: NOT_SERVING while none of the host's engines that
  serve a model can serve (each UNAVAILABLE or UNHEALTHY: CoreML off macOS, a crashed
  local model), SERVING again once one can; an engine without models has no say;
- ``modelyard.v1.GatewayService``: NOT_SERVING while the catalog holds models and not
  one of them is servable (`servable.servable`: every model, or each of its
  deployments, tripped UNHEALTHY by the health monitor or UNAVAILABLE, or none
  deployed), SERVING again once one is. An empty catalog
  (a stack starting, before discovery) is not a failure of the gateway's.

Each change is set once (Watch streams see it, `grpc.health.v1`'s own semantics) and
logged with the reason. The process's overall status ("") stays as the server has it:
the process itself is up. Once the server drains, nothing is set again: NOT_SERVING
is its last word.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping

from grpc_health.v1 import health_pb2

from modelyard.enum_values import value_name
from modelyard.servable import servable, servable_health
from modelyard.server.runtime import DrainableHealth
from modelyard_client.v1 import common_pb2

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

# What a service can do now: None when it can serve, else why it cannot.
Problem = Callable[[], str | None]


class ServiceHealth:
    """Sets each named service's status from its check (see the module doc)."""

    def __init__(
        self,
        health: DrainableHealth,
        checks: Mapping[str, Problem],
        interval_s: float,
        draining: Callable[[], bool],
    ) -> None:
        self._health = health
        self._checks = dict(checks)
        self._interval_s = interval_s
        self._draining = draining
        self._serving = dict.fromkeys(self._checks, True)  # as start_server set them

    async def check_once(self) -> None:
        for name, check in self._checks.items():
            problem = check()
            if self._draining():
                return  # the drain's NOT_SERVING stands
            serving = problem is None
            if serving == self._serving[name]:
                continue
            self._serving[name] = serving
            await self._health.set(name, SERVING if serving else NOT_SERVING)
            if serving:
                log.info("health: %s SERVING again", name)
            else:
                log.warning("health: %s NOT_SERVING: %s", name, problem)

    async def run(self) -> None:
        while not self._draining():
            await asyncio.sleep(self._interval_s)
            await self.check_once()


EngineStatus = tuple[str, "common_pb2.HealthStatus.ValueType", str]  # kind, status, reason


def engines_problem(statuses: Callable[[], Iterable[EngineStatus]]) -> Problem:
    """A backend host's check: `statuses` gives each engine's (kind, status, reason)."""

    def problem() -> str | None:
        found = list(statuses())
        if not found or any(servable_health(status) for _, status, _ in found):
            return None
        return "no engine can serve: " + "; ".join(
            f"{kind} {_health_name(status)}" + (f" ({reason})" if reason else "")
            for kind, status, reason in found
        )

    return problem


def catalog_problem(models: Callable[[], list[common_pb2.ModelEntry]]) -> Problem:
    """A gateway's check over its catalog view's models."""

    def problem() -> str | None:
        entries = models()
        if not entries or any(servable(m) for m in entries):
            return None
        shown = ", ".join(f"{m.id} {_model_state(m)}" for m in entries[:5])
        more = f" and {len(entries) - 5} more" if len(entries) > 5 else ""
        return f"no model in the catalog is servable: {shown}{more}"

    return problem


def _model_state(model: common_pb2.ModelEntry) -> str:
    if not servable_health(model.health) or not model.deployments:
        return _health_name(model.health) if model.deployments else "without a deployment"
    return "with no servable deployment"


def _health_name(status: int) -> str:
    return value_name(common_pb2.HealthStatus.DESCRIPTOR, status)
