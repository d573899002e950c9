"""Picking a deployment of a model, with outlier ejection, through the native pool.

One `DeploymentPool` per model, kept while its set of deployments stays the
same, so in-flight counts, latency averages and ejections carry across
requests. Deployment health from the catalog is applied before each pick.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

# Re-exported (`as`): configs are checked against the names the native pool accepts.
from modelyard._native import STRATEGIES as STRATEGIES
from modelyard._native import DeploymentPool
from modelyard.servable import servable_health
from modelyard.v1 import common_pb2


@dataclass
class Lease:
    """One request's use of a deployment; `finish` it exactly once."""

    pool: DeploymentPool | None
    index: int
    deployment: common_pb2.Deployment
    started: float

    def finish(self, ok: bool) -> None:
        pool, self.pool = self.pool, None
        if pool is not None:
            pool.finish(self.index, (time.perf_counter() - self.started) * 1000, ok)


class Balancer:
    def __init__(self, strategy: str = "least_loaded", region: str = "") -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown balancing strategy {strategy!r}; use one of {STRATEGIES}")
        self.strategy = strategy
        self.region = region
        self._pools: dict[str, tuple[tuple[tuple[str, str], ...], DeploymentPool]] = {}

    def lease(self, model: common_pb2.ModelEntry) -> Lease:
        """A deployment of `model` to call; raises BackendUnavailable when none is usable."""
        deployments = model.deployments
        shape = tuple((d.endpoint, d.region) for d in deployments)
        known = self._pools.get(model.id)
        if known is None or known[0] != shape:
            cost = model.cost.usd_per_input_token + model.cost.usd_per_output_token
            pool = DeploymentPool([(d.endpoint, d.region, cost) for d in deployments])
            known = self._pools[model.id] = (shape, pool)
        pool = known[1]
        for i, d in enumerate(deployments):
            pool.set_healthy(i, servable_health(d.health))
        index = pool.pick(self.strategy, self.region)
        pool.start(index)
        return Lease(pool, index, deployments[index], time.perf_counter())
