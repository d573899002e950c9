"""The gateway's live figures of each model and deployment: a rolling window of attempts.

Every model attempt the gateway makes (`GatewayCore._stream_one`: a first try, a retry,
a fallback, a hedge, a continuation) that ends, answered or failed, is one `record`:
its latency (start to end), its time to the first piece, its output tokens after the
first piece and the time they took, whether it succeeded, and what it cost. An attempt
the gateway itself closed before it ended (the caller went away, a hedge lost the
race) is not counted: it neither succeeded nor failed; nor is a refusal of the request
itself (`InvalidRequest` and its kin: the caller's mistake, not the model's), nor an
Embed call (no answer streams).

The window is the last `WINDOW_S` seconds, and at most `MAX_SAMPLES` attempts, of
each model and of each (model, deployment endpoint): the newest count, the oldest
fall out. Recording is O(1) (two deque appends); the percentiles (nearest rank) and
rates are computed when the figures are read, by `GetModelMetrics`,
`GetProviderMetrics` and the write-back to the registry (`performance_reports.py`).

Each model's first-piece waits are kept too, for a hedge delay set as a
percentile (`first_piece_wait`): the time to the first piece of every attempt
that had one, and the wait of every attempt the gateway closed before one came
(a hedge's loser, a caller gone). Those are lower bounds of waits the window
would otherwise lose: without them a model's slow starts, once hedged, would
drop out of its figures, its percentile fall, and hedges grow on themselves.

The same record counts, per deployment, its attempts and those that were the
deployment's fault (unreachable, timed out, cut off) over the circuit's shorter
window (`gateway.circuit.window`, in tenths: `FaultWindow`), which the balancer's
failure-rate rule reads (`balancing.FailureRate`). The canary's and A/B test's
arm outcomes are built by the gateway from the same times and cost
(`GatewayCore._stream_one`), so every consumer sees one measurement of each attempt.

Not thread-safe, and need not be: the gateway records and reads on its one event loop.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import NamedTuple

from modelyard.percentiles import nearest_rank
from modelyard_client.v1 import common_pb2, gateway_pb2

WINDOW_S = 60.0  # how far back the figures look
MAX_SAMPLES = 4096  # attempts kept per model and per deployment: a busy model's last few
CIRCUIT_WINDOW_S = 10.0  # how far back the circuit's counts look (gateway.circuit.window)
_BUCKETS = 10  # the circuit window's buckets: an attempt leaves it within a tenth of it
MIN_WAITS = 20  # first-piece waits in the window before a percentile is a hedge delay
WAIT_CACHE_S = 1.0  # a model's percentile is computed again at most this often


class Sample(NamedTuple):
    """One attempt, as the window keeps it (times in seconds)."""

    at: float  # when it ended, on the tracker's clock
    latency_s: float  # start to end
    ttft_s: float  # start to the first piece; 0.0: none came
    decode_tokens: int  # output tokens after the first piece
    decode_s: float  # the first piece to the end
    ok: bool
    cost_usd: float


@dataclass(frozen=True, slots=True)
class Figures:
    """What a window of attempts shows (`WindowFigures` on the wire); times in ms."""

    requests: int = 0
    errors: int = 0
    latency_ms_p50: float = 0.0
    latency_ms_p95: float = 0.0
    latency_ms_p99: float = 0.0
    ttft_ms_p50: float = 0.0
    ttft_ms_p95: float = 0.0
    tokens_per_second: float = 0.0
    cost_per_request_usd: float = 0.0
    window_s: float = 0.0

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def succeeded(self) -> int:
        return self.requests - self.errors

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.window_s if self.window_s > 0 else 0.0

    def proto(self) -> gateway_pb2.WindowFigures:
        return gateway_pb2.WindowFigures(
            requests=self.requests,
            errors=self.errors,
            error_rate=self.error_rate,
            latency_ms_p50=self.latency_ms_p50,
            latency_ms_p95=self.latency_ms_p95,
            latency_ms_p99=self.latency_ms_p99,
            ttft_ms_p50=self.ttft_ms_p50,
            ttft_ms_p95=self.ttft_ms_p95,
            tokens_per_second=self.tokens_per_second,
            requests_per_second=self.requests_per_second,
            cost_per_request_usd=self.cost_per_request_usd,
            window_s=self.window_s,
        )

    def profile(self, current: common_pb2.PerformanceProfile) -> common_pb2.PerformanceProfile:
        """The registry's performance profile these figures make, over `current` (the
        entry's): the cold start is kept, and so are the latencies and tokens/s while
        the window measured none (every attempt failed, no answer of two tokens)."""
        measured = self.succeeded > 0
        return common_pb2.PerformanceProfile(
            tokens_per_second=self.tokens_per_second or current.tokens_per_second,
            latency_ms_p50=self.latency_ms_p50 if measured else current.latency_ms_p50,
            latency_ms_p95=self.latency_ms_p95 if measured else current.latency_ms_p95,
            cold_start_ms=current.cold_start_ms,
            error_rate=self.error_rate,
            samples=self.requests,
        )


def figures_of(samples: Collection[Sample], window_s: float) -> Figures:
    """The figures of `samples`: latencies, first pieces and cost of those that succeeded;
    tokens/s as their decode tokens over their decode time, summed."""
    ok = [s for s in samples if s.ok]
    latencies = sorted([s.latency_s * 1000 for s in ok])
    ttfts = sorted([s.ttft_s * 1000 for s in ok if s.ttft_s > 0])
    decoding = [s for s in ok if s.decode_tokens > 0 and s.decode_s > 0]
    decode_s = sum(s.decode_s for s in decoding)
    tokens = sum(s.decode_tokens for s in decoding)
    return Figures(
        requests=len(samples),
        errors=len(samples) - len(ok),
        latency_ms_p50=nearest_rank(latencies, 50),
        latency_ms_p95=nearest_rank(latencies, 95),
        latency_ms_p99=nearest_rank(latencies, 99),
        ttft_ms_p50=nearest_rank(ttfts, 50),
        ttft_ms_p95=nearest_rank(ttfts, 95),
        tokens_per_second=tokens / decode_s if decode_s > 0 else 0.0,
        cost_per_request_usd=sum(s.cost_usd for s in ok) / len(ok) if ok else 0.0,
        window_s=window_s,
    )


class FaultWindow:
    """One deployment's attempts, and those that were its fault, over the last `window_s`
    seconds, counted in ten buckets (an attempt leaves the count within a tenth of the
    window after it is `window_s` old); `clear` when its circuit opens, so the count
    starts afresh when the deployment is back."""

    __slots__ = ("_buckets", "_width")

    def __init__(self, window_s: float) -> None:
        self._width = window_s / _BUCKETS
        self._buckets: deque[list[int]] = deque()  # [bucket index, attempts, faults]

    def add(self, now: float, fault: bool) -> None:
        index = int(now / self._width)
        buckets = self._buckets
        if buckets and buckets[-1][0] == index:
            last = buckets[-1]
            last[1] += 1
            last[2] += fault
            return
        buckets.append([index, 1, int(fault)])
        while buckets[0][0] <= index - _BUCKETS:
            buckets.popleft()

    def counts(self, now: float) -> tuple[int, int]:
        """The attempts and the faults among them in the window ending at `now`."""
        oldest = int(now / self._width) - _BUCKETS + 1
        attempts = faults = 0
        for index, n, f in self._buckets:
            if index >= oldest:
                attempts += n
                faults += f
        return attempts, faults

    def clear(self) -> None:
        self._buckets.clear()


class _ModelWindow:
    __slots__ = ("closed", "deployments", "faults", "provider", "samples", "wait")

    def __init__(self, provider: str, max_samples: int) -> None:
        self.provider = provider
        self.samples: deque[Sample] = deque(maxlen=max_samples)
        self.deployments: dict[str, deque[Sample]] = {}
        self.faults: dict[str, FaultWindow] = {}
        # (when, seconds waited) of attempts closed before their first piece.
        self.closed: deque[tuple[float, float]] = deque(maxlen=max_samples)
        self.wait: tuple[float, float, float] | None = None  # (at, percentile, seconds)


class PerformanceTracker:
    """Each model's and deployment's attempts over the last `window_s` seconds (see the
    module docstring). `clock`: the one the gateway times its attempts with."""

    def __init__(
        self,
        window_s: float = WINDOW_S,
        max_samples: int = MAX_SAMPLES,
        clock: Callable[[], float] = time.perf_counter,
        circuit_window_s: float = CIRCUIT_WINDOW_S,
    ) -> None:
        self.window_s = window_s
        self.max_samples = max_samples
        self.circuit_window_s = circuit_window_s
        self.clock = clock
        self._started = clock()
        self._models: dict[str, _ModelWindow] = {}

    def record(
        self,
        model_id: str,
        provider: str,
        endpoint: str,
        started: float,
        first_piece_at: float,
        output_tokens: int,
        ok: bool,
        cost_usd: float,
        fault: bool = False,
        ended: float | None = None,
    ) -> None:
        """One attempt that ended at `ended` (None: now): `started` and `first_piece_at`
        (0.0: no piece came) on the tracker's clock; `fault`: it failed by the deployment's
        fault (counted for its circuit)."""
        now = self.clock() if ended is None else ended
        window = self._models.get(model_id)
        if window is None:
            window = self._models[model_id] = _ModelWindow(provider, self.max_samples)
        decoding = first_piece_at > 0 and output_tokens > 1
        sample = Sample(
            now,
            now - started,
            first_piece_at - started if first_piece_at > 0 else 0.0,
            output_tokens - 1 if decoding else 0,
            now - first_piece_at if decoding else 0.0,
            ok,
            cost_usd,
        )
        window.samples.append(sample)
        deployment = window.deployments.get(endpoint)
        if deployment is None:
            deployment = window.deployments[endpoint] = deque(maxlen=self.max_samples)
        deployment.append(sample)
        faults = window.faults.get(endpoint)
        if faults is None:
            faults = window.faults[endpoint] = FaultWindow(self.circuit_window_s)
        faults.add(now, fault)

    def closed_waiting(self, model_id: str, provider: str, started: float, ended: float) -> None:
        """An attempt the gateway closed at `ended` before its first piece came."""
        window = self._models.get(model_id)
        if window is None:
            window = self._models[model_id] = _ModelWindow(provider, self.max_samples)
        window.closed.append((ended, ended - started))

    def first_piece_wait(self, model_id: str, percentile: float) -> float | None:
        """The `percentile` of the model's first-piece waits in the window, in seconds
        (see the module docstring); None while fewer than `MIN_WAITS` are in it.
        Computed at most once per `WAIT_CACHE_S`."""
        window = self._models.get(model_id)
        if window is None:
            return None
        now = self.clock()
        cached = window.wait
        if cached is not None and now - cached[0] < WAIT_CACHE_S and cached[1] == percentile:
            return cached[2] if cached[2] >= 0 else None
        oldest = now - self.window_s
        closed = window.closed
        while closed and closed[0][0] < oldest:
            closed.popleft()
        waits = [s.ttft_s for s in self._fresh(window.samples) if s.ttft_s > 0]
        waits.extend(wait for _, wait in closed)
        found = nearest_rank(sorted(waits), percentile) if len(waits) >= MIN_WAITS else -1.0
        window.wait = (now, percentile, found)
        return found if found >= 0 else None

    def circuit_counts(self, model_id: str, endpoint: str) -> tuple[int, int]:
        """The deployment's attempts and faults in the circuit window, since its circuit
        last opened (`circuit_opened`)."""
        window = self._models.get(model_id)
        faults = window.faults.get(endpoint) if window is not None else None
        return faults.counts(self.clock()) if faults is not None else (0, 0)

    def circuit_opened(self, model_id: str, endpoint: str) -> None:
        """The deployment's circuit opened: its circuit counts start afresh."""
        window = self._models.get(model_id)
        faults = window.faults.get(endpoint) if window is not None else None
        if faults is not None:
            faults.clear()

    # ---- reading: the window moved on since the last read, so drop what fell out first

    def span_s(self) -> float:
        """The window's length now: `window_s`, or the time since the tracker started."""
        return min(self.window_s, self.clock() - self._started)

    def model_ids(self) -> list[str]:
        """The models with attempts in the window, sorted."""
        return sorted(m for m, w in self._models.items() if self._fresh(w.samples))

    def recorded(self, model_id: str) -> bool:
        """Whether the model has attempts in the window."""
        window = self._models.get(model_id)
        return window is not None and bool(self._fresh(window.samples))

    def provider_of(self, model_id: str) -> str:
        window = self._models.get(model_id)
        return window.provider if window is not None else ""

    def figures(self, model_id: str) -> Figures:
        """The model's figures over the window (an unknown model: zeros)."""
        window = self._models.get(model_id)
        samples = self._fresh(window.samples) if window is not None else ()
        return figures_of(samples, self.span_s())

    def deployment_figures(self, model_id: str) -> dict[str, Figures]:
        """The model's figures per deployment endpoint with attempts in the window."""
        window = self._models.get(model_id)
        if window is None:
            return {}
        span = self.span_s()
        found = {}
        for endpoint, samples in sorted(window.deployments.items()):
            if self._fresh(samples):
                found[endpoint] = figures_of(samples, span)
        return found

    def provider_figures(self, model_ids: Iterable[str]) -> Figures:
        """The figures of the attempts of `model_ids` together (a provider's models)."""
        samples: list[Sample] = []
        for model_id in model_ids:
            window = self._models.get(model_id)
            if window is not None:
                samples.extend(self._fresh(window.samples))
        return figures_of(samples, self.span_s())

    def _fresh(self, samples: deque[Sample]) -> deque[Sample]:
        """`samples` without those older than the window (they end in time order)."""
        oldest = self.clock() - self.window_s
        while samples and samples[0].at < oldest:
            samples.popleft()
        return samples
