"""Picking a deployment of a model, with circuit breaking, through the native pool.

One `DeploymentPool` per model, kept while its set of deployments stays the
same, so in-flight counts, latency averages and circuits carry across
requests. Deployment health from the catalog is applied before each pick.

A deployment that fails `CircuitPolicy.consecutive_failures` calls in a row is
out for `base_ejection_s`; then one call is let through as its probe (a real
request: when it fails, the gateway's fallback chain still serves it). The
probe's success closes the circuit; its failure doubles the time out, at most
`max_ejection_s`. While every deployment of a model is out, `lease` raises
BackendUnavailable and the gateway tries the request's next fallback model.
A deployment the health monitor ejected (`hold_out`) is out the same way until
it is let in, its catalog health notwithstanding.

A circuit opens the same way, by the rule `FailureRate`, when a failure leaves
`failure_rate` or more of the deployment's last `min_requests`-or-more attempts
in the circuit window its fault: a flapping deployment that never fails five
times in a row. The counts are the gateway's live figures (`PerformanceTracker`,
which every attempt is recorded in first), read only when a call failed by the
deployment's fault: the healthy path does nothing more.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

# Re-exported (`as`): configs are checked against the names the native pool accepts.
from modelyard._native import STRATEGIES as STRATEGIES
from modelyard._native import DeploymentPool
from modelyard.config.schema import CircuitConfig
from modelyard.gateway.performance import PerformanceTracker
from modelyard.meters.resilience import ResilienceMeter
from modelyard.servable import servable_health
from modelyard_client.errors import BackendUnavailable
from modelyard_client.v1 import common_pb2


@dataclass(frozen=True)
class FailureRate:
    """The live rule of a deployment's circuit: it opens when `share` or more of its
    attempts in the tracker's circuit window, `min_requests` of them at least, were
    its fault."""

    tracker: PerformanceTracker
    share: float
    min_requests: int

    def trips(self, model_id: str, endpoint: str) -> bool:
        attempts, faults = self.tracker.circuit_counts(model_id, endpoint)
        return attempts >= self.min_requests and faults >= self.share * attempts


@dataclass
class Lease:
    """One request's use of a deployment; `finish` it exactly once."""

    pool: DeploymentPool | None
    index: int
    deployment: common_pb2.Deployment
    started: float
    model_id: str = ""
    # Told when this call's failure opens a circuit, with the cause ("circuit": failures
    # in a row or a failed probe; "failure_rate": `FailureRate`).
    ejected: Callable[[str], None] | None = None
    rate: FailureRate | None = None

    def finish(self, ok: bool) -> None:
        """The call ended; `ok` False: by the deployment's fault."""
        pool, self.pool = self.pool, None
        if pool is None:
            return
        if ok:
            pool.finish(self.index, (time.perf_counter() - self.started) * 1000, ok)
            return
        opened_until = pool.stats(self.index)[2]
        pool.finish(self.index, (time.perf_counter() - self.started) * 1000, ok)
        cause = None
        if pool.stats(self.index)[2] != opened_until:  # this failure (re)opened it
            cause = "circuit"
        elif self.rate is not None and self.rate.trips(self.model_id, self.deployment.endpoint):
            cause = "failure_rate" if pool.trip(self.index) else None
        if cause is None:
            return
        if self.rate is not None:
            self.rate.tracker.circuit_opened(self.model_id, self.deployment.endpoint)
        if self.ejected is not None:
            self.ejected(cause)


@dataclass(frozen=True)
class CircuitPolicy:
    """When a deployment's circuit opens and for how long; the native pool checks the
    values (InvalidRequest naming the field) when a model's pool is first built.

    The defaults are `gateway.circuit`'s (`config/schema.py` `CircuitConfig`):
    open 5 s after 5 failures in a row, doubling up to 30 s while probes fail,
    so a recovered deployment gets its traffic back within 30 s; every
    deployment of a model may be out at once (`max_ejected_share` 1.0), its
    calls then going to their fallbacks.
    """

    consecutive_failures: int = 5
    base_ejection_s: float = 5.0
    max_ejection_s: float = 30.0
    # A probe is a real call: this is the longest one may run (the default deadline).
    probe_timeout_s: float = 60.0
    max_ejected_share: float = 1.0
    # `FailureRate`: half of 20 attempts or more in 10 s the deployment's fault; 0: off.
    failure_rate: float = 0.5
    min_requests: int = 20
    window_s: float = 10.0

    @classmethod
    def from_config(cls, circuit: CircuitConfig) -> CircuitPolicy:
        return cls(
            consecutive_failures=circuit.consecutive_failures,
            base_ejection_s=circuit.base_ejection,
            max_ejection_s=circuit.max_ejection,
            probe_timeout_s=circuit.probe_timeout,
            max_ejected_share=circuit.max_ejected_share,
            failure_rate=circuit.failure_rate,
            min_requests=circuit.min_requests,
            window_s=circuit.window,
        )


class Balancer:
    def __init__(
        self,
        strategy: str = "least_loaded",
        region: str = "",
        circuit: CircuitPolicy | None = None,
        events: ResilienceMeter | None = None,
        tracker: PerformanceTracker | None = None,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown balancing strategy {strategy!r}; use one of {STRATEGIES}")
        self.strategy = strategy
        self.region = region
        self.circuit = circuit or CircuitPolicy()
        self.events = events  # ejections counted; None: not
        self.rate: FailureRate | None = None
        if tracker is not None:
            self.reads(tracker)
        # Model id -> its deployments' shape, its pool, and what a circuit opening tells.
        self._pools: dict[
            str, tuple[tuple[tuple[str, str], ...], DeploymentPool, Callable[[str], None] | None]
        ] = {}
        # (model id, endpoint) held out whatever their catalog health (the health monitor's
        # `eject`), until let in.
        self._held_out: set[tuple[str, str]] = set()

    def reads(self, tracker: PerformanceTracker) -> None:
        """Open circuits by `FailureRate` over `tracker`'s counts (the gateway's, which
        records every attempt before its lease finishes); off while `failure_rate` is 0."""
        c = self.circuit
        tracker.circuit_window_s = c.window_s
        self.rate = FailureRate(tracker, c.failure_rate, c.min_requests) if c.failure_rate else None

    def hold_out(self, model_id: str, endpoint: str) -> None:
        """Send no call of `model_id` to the deployment at `endpoint` until `let_in`."""
        if self.events is not None and (model_id, endpoint) not in self._held_out:
            self.events.ejection(model_id, "health")
        self._held_out.add((model_id, endpoint))

    def let_in(self, model_id: str, endpoint: str) -> None:
        self._held_out.discard((model_id, endpoint))

    def lease(self, model: common_pb2.ModelEntry, region: str = "") -> Lease:
        """A deployment of `model` to call; raises BackendUnavailable when none is usable.
        `region` (the request's `constraints.region`; "": any): only a deployment there,
        whatever the strategy; BackendUnavailable naming it when the model has none."""
        deployments = model.deployments
        if region and not any(d.region == region for d in deployments):
            raise BackendUnavailable(
                f"model '{model.id}' has no deployment in region '{region}' (constraints.region)"
            )
        shape = tuple((d.endpoint, d.region) for d in deployments)
        known = self._pools.get(model.id)
        if known is None or known[0] != shape:
            cost = model.cost.usd_per_input_token + model.cost.usd_per_output_token
            c = self.circuit
            pool = DeploymentPool(
                [(d.endpoint, d.region, cost) for d in deployments],
                consecutive_failures=c.consecutive_failures,
                base_ejection_s=c.base_ejection_s,
                max_ejection_s=c.max_ejection_s,
                probe_timeout_s=c.probe_timeout_s,
                max_ejected_share=c.max_ejected_share,
            )
            events, model_id = self.events, model.id
            ejected = None if events is None else lambda cause: events.ejection(model_id, cause)
            known = self._pools[model.id] = (shape, pool, ejected)
        pool = known[1]
        held = self._held_out
        for i, d in enumerate(deployments):
            pool.set_healthy(
                i,
                servable_health(d.health)
                and not (held and (model.id, d.endpoint) in held)
                and (not region or d.region == region),
            )
        try:
            index = pool.pick(self.strategy, self.region)
        except BackendUnavailable as exc:
            if not region:
                raise
            raise BackendUnavailable(
                f"{exc.message}; the request's constraints.region '{region}' leaves out "
                f"the {sum(d.region != region for d in deployments)} deployed elsewhere"
            ) from None
        pool.start(index)
        return Lease(
            pool, index, deployments[index], time.perf_counter(), model.id, known[2], self.rate
        )
