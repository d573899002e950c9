"""Every instrument of a modelyard process: its name, unit, kind and bucket boundaries.

Names, units, attributes and boundaries of the ``gen_ai.*`` instruments follow the
OpenTelemetry semantic conventions for generative AI metrics (semantic-conventions
v1.41.0, docs/gen-ai/gen-ai-metrics.md: "SHOULD be specified with ExplicitBucketBoundaries
of ..."). The ``modelyard.*`` instruments are this project's own.

An instrument aggregates in place, cumulatively from the process's start: a counter a
sum per attribute set, a histogram per attribute set its bucket counts, sum, count, min
and max. Attribute sets are tuples of (key, value) pairs in a fixed order, made by the
caller; the number of sets an instrument keeps is bounded (`MAX_SERIES`): past it a new
set is counted under ``otel.metric.overflow=true``, as the SDK's cardinality limit does.
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field
from typing import Final

Attributes = tuple[tuple[str, str], ...]

MAX_SERIES: Final = 2000  # per instrument, as the OpenTelemetry SDK's default limit
OVERFLOW: Final[Attributes] = (("otel.metric.overflow", "true"),)

# semantic-conventions v1.41.0, docs/gen-ai/gen-ai-metrics.md
TOKEN_BOUNDS: Final = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304,
                       16777216, 67108864)  # fmt: skip
DURATION_BOUNDS: Final = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24,
                          20.48, 40.96, 81.92)  # fmt: skip
TTFT_BOUNDS: Final = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
                      2.5, 5.0, 7.5, 10.0)  # fmt: skip
TPOT_BOUNDS: Final = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)


@dataclass(slots=True)
class Series:
    """One attribute set's aggregate."""

    value: float = 0.0  # a counter's sum; a histogram's sum
    count: int = 0
    buckets: list[int] = field(default_factory=list)  # len(bounds) + 1 for a histogram
    min: float = float("inf")
    max: float = float("-inf")
    bounds: tuple[float, ...] = ()  # a histogram's, its instrument's

    def observe(self, value: float) -> None:
        """One histogram value."""
        self.value += value
        self.count += 1
        # An explicit-bucket histogram's bucket i holds bounds[i-1] < v <= bounds[i].
        self.buckets[bisect.bisect_left(self.bounds, value)] += 1
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value


class Instrument:
    """A counter (`add`) or a histogram (`record`) with its series by attribute set."""

    def __init__(
        self, name: str, unit: str, description: str, bounds: tuple[float, ...] | None = None
    ) -> None:
        self.name = name
        self.unit = unit
        self.description = description
        self.bounds = bounds  # None: a counter
        self.series: dict[Attributes, Series] = {}
        self.start_ns = time.time_ns()

    def series_of(self, attributes: Attributes) -> Series:
        """The series of `attributes` (the overflow series past `MAX_SERIES`); a caller
        recording the same set often may keep it."""
        series = self.series.get(attributes)
        if series is None:
            if len(self.series) >= MAX_SERIES and attributes != OVERFLOW:
                return self.series_of(OVERFLOW)
            bounds = self.bounds or ()
            series = Series(buckets=[0] * (len(bounds) + 1) if bounds else [], bounds=bounds)
            self.series[attributes] = series
        return series

    def add(self, amount: float, attributes: Attributes) -> None:
        series = self.series_of(attributes)
        series.value += amount
        series.count += 1

    def record(self, value: float, attributes: Attributes) -> None:
        assert self.bounds is not None
        self.series_of(attributes).observe(value)


class Meters:
    """The instruments of one process (one stack)."""

    def __init__(self) -> None:
        self.client_token_usage = Instrument(
            "gen_ai.client.token.usage", "{token}", "Number of input and output tokens used.",
            TOKEN_BOUNDS,
        )  # fmt: skip
        self.client_operation_duration = Instrument(
            "gen_ai.client.operation.duration", "s", "GenAI operation duration.", DURATION_BOUNDS
        )
        self.server_request_duration = Instrument(
            "gen_ai.server.request.duration", "s",
            "Generative AI server request duration such as time-to-last byte or last output "
            "token.", DURATION_BOUNDS,
        )  # fmt: skip
        self.server_time_to_first_token = Instrument(
            "gen_ai.server.time_to_first_token", "s",
            "Time to generate first token for successful responses.", TTFT_BOUNDS,
        )  # fmt: skip
        self.server_time_per_output_token = Instrument(
            "gen_ai.server.time_per_output_token", "s",
            "Time per output token generated after the first token for successful responses.",
            TPOT_BOUNDS,
        )  # fmt: skip
        self.requests = Instrument(
            "modelyard.requests", "{request}",
            "Calls answered, by RPC and status code (refused ones too).",
        )  # fmt: skip
        self.cost = Instrument(
            "modelyard.cost", "USD", "What answers cost, by the model that answered."
        )
        self.cache_lookups = Instrument(
            "modelyard.cache.lookups", "{lookup}",
            "Response cache lookups of cacheable calls, by result (hit, miss).",
        )  # fmt: skip
        self.swap_phases = Instrument(
            "modelyard.swap.phases", "{swap}",
            "Swaps entering each phase (preparing, warming, validating, canary, switched, "
            "draining, done, rolled_back, failed).",
        )  # fmt: skip
        self.recoveries = Instrument(
            "modelyard.recoveries", "{recovery}",
            "Recovery actions the health monitor ran on a tripped deployment, by action "
            "(eject, reload, reconnect) and outcome (ok, failed, skipped).",
        )  # fmt: skip
        # The resilience events, recorded where each happens (`resilience.py`).
        self.retries = Instrument(
            "modelyard.retries", "{retry}",
            "Attempts the gateway made again on the same model, by the model and the "
            "failure's error.type.",
        )  # fmt: skip
        self.fallbacks = Instrument(
            "modelyard.fallbacks", "{fallback}",
            "Calls passed on to the next model of their chain, by the model that failed, "
            "the next one and the failure's error.type.",
        )  # fmt: skip
        self.hedges = Instrument(
            "modelyard.hedges", "{hedge}",
            "Hedge attempts sent because a model's first piece was late, by the slow model "
            "and the hedge's.",
        )  # fmt: skip
        self.ejections = Instrument(
            "modelyard.ejections", "{ejection}",
            "Deployments taken out of rotation, by the model and cause (circuit: failures "
            "in a row opened its circuit; health: the health monitor's eject).",
        )  # fmt: skip
        self.ab_assignments = Instrument(
            "modelyard.ab.assignments", "{call}",
            "Calls to a split alias assigned to an arm, by the split (an A/B test's or a "
            "canary swap's id), the arm and its model.",
        )  # fmt: skip

        self.alerts = Instrument(
            "modelyard.alerts", "{message}",
            "Alert messages, by rule, state (firing, resolved) and delivery (logged: no "
            "webhook; delivered; dropped).",
        )  # fmt: skip

    def instruments(self) -> list[Instrument]:
        return [v for v in vars(self).values() if isinstance(v, Instrument)]
