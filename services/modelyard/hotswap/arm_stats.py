"""What one arm of a split has done: its calls, errors, latencies, cost and feedback.

Fed one `ArmOutcome` at a time (the gateways report each call a split
routed) and one feedback score at a time; read as an `ABArmResult`.
Latencies are kept as a uniform sample of at most `SAMPLE_LIMIT` values
(reservoir sampling), so the percentiles of a long test cost bounded memory.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from modelyard.hotswap.sequential import RunningMean
from modelyard.percentiles import nearest_rank
from modelyard_client.v1 import hotswap_pb2

SAMPLE_LIMIT = 4096


@dataclass
class Sample:
    """A uniform sample of a stream of numbers, for its percentiles."""

    values: list[float] = field(default_factory=list)
    seen: int = 0
    _random: random.Random = field(default_factory=lambda: random.Random(0))

    def add(self, x: float) -> None:
        self.seen += 1
        if len(self.values) < SAMPLE_LIMIT:
            self.values.append(x)
            return
        slot = self._random.randrange(self.seen)  # Algorithm R: each value kept equally likely
        if slot < SAMPLE_LIMIT:
            self.values[slot] = x

    def percentile(self, q: float) -> float:
        """The `q`-th percentile (0-100), nearest rank; 0.0 when empty."""
        return nearest_rank(sorted(self.values), q)


@dataclass
class ArmStats:
    name: str
    model_id: str
    requests: int = 0
    errors: int = 0
    cost_usd: float = 0.0
    latency_ms: Sample = field(default_factory=Sample)  # of the calls that succeeded
    ttft_ms: Sample = field(default_factory=Sample)  # of the streamed calls that succeeded
    scores: RunningMean = field(default_factory=RunningMean)

    def add(self, outcome: hotswap_pb2.ArmOutcome) -> None:
        self.requests += 1
        self.cost_usd += outcome.cost_usd
        if outcome.failed:
            self.errors += 1
            return
        self.latency_ms.add(outcome.latency_ms)
        if outcome.ttft_ms > 0:
            self.ttft_ms.add(outcome.ttft_ms)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def result(self) -> hotswap_pb2.ABArmResult:
        return hotswap_pb2.ABArmResult(
            name=self.name,
            model_id=self.model_id,
            requests=self.requests,
            errors=self.errors,
            error_rate=self.error_rate,
            latency_ms_p50=self.latency_ms.percentile(50),
            latency_ms_p95=self.latency_ms.percentile(95),
            ttft_ms_p50=self.ttft_ms.percentile(50),
            cost_usd_per_request=self.cost_usd / self.requests if self.requests else 0.0,
            mean_score=self.scores.mean,
            scores=self.scores.n,
        )


# The number each metric compares for one outcome (None: the outcome says nothing
# on it), and whether lower is better.
METRICS = ("latency", "error_rate", "ttft", "cost", "score")
LOWER_IS_BETTER = {"latency": True, "error_rate": True, "ttft": True, "cost": True, "score": False}


def metric_value(metric: str, outcome: hotswap_pb2.ArmOutcome) -> float | None:
    """What `outcome` adds to `metric`'s comparison ("score" comes from feedback instead)."""
    if metric == "error_rate":
        return 1.0 if outcome.failed else 0.0
    if metric == "cost":
        return outcome.cost_usd
    if outcome.failed:
        return None
    if metric == "latency":
        return outcome.latency_ms
    if metric == "ttft":
        return outcome.ttft_ms if outcome.ttft_ms > 0 else None
    return None
