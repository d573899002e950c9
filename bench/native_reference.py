"""Straightforward pure-Python versions of the native core's algorithms.

`bench/native_core.py` times them against `modelyard._native`, and
`tests/native/test_native_traffic_split.py` checks that the native sticky hash
matches `assign_arm` here bit for bit. They follow the Rust code's rules
(native/src/) without its care for allocation; they are references, not API.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

MASK64 = (1 << 64) - 1


# ---- token bucket (native/src/token_bucket.rs) -------------------------------


class ReferenceTokenBucket:
    """Holds up to `capacity`, refills at `refill_per_second`; takes all or nothing."""

    def __init__(self, capacity: float, refill_per_second: float) -> None:
        self.capacity = capacity
        self.refill_per_second = refill_per_second
        self.level = capacity
        self.last: float | None = None

    def try_take(self, amount: float, now: float) -> float:
        if self.last is not None and now > self.last:
            accrued = (now - self.last) * self.refill_per_second
            self.level = min(self.capacity, self.level + accrued)
        if self.last is None or now > self.last:
            self.last = now
        if amount > self.level:
            if self.refill_per_second == 0:
                return math.inf
            return (amount - self.level) / self.refill_per_second
        self.level -= amount
        return 0.0


# ---- selection (native/src/scoring.rs) ---------------------------------------


@dataclass(frozen=True)
class RefCandidate:
    model_id: str
    capabilities: int = 0
    latency_ms: float = 0.0
    tokens_per_second: float = 0.0
    usd_per_input_token: float = 0.0
    usd_per_output_token: float = 0.0
    usd_per_request: float = 0.0
    reliability: float = 1.0
    context_window: int = 0
    healthy: bool = True


@dataclass(frozen=True)
class RefConstraints:
    required_capabilities: int = 0
    prompt_tokens: int = 0
    max_output_tokens: int = 0
    max_latency_ms: float = 0.0
    max_cost_usd: float = 0.0
    excluded_models: tuple[str, ...] = field(default_factory=tuple)


def reference_select(
    candidates: list[RefCandidate],
    constraints: RefConstraints,
    weights: tuple[float, float, float, float],
) -> tuple[int | None, list[tuple[bool, float, str]]]:
    """(chosen index, [(eligible, total, rejection)]) with the native rules."""
    k = constraints
    total_weight = sum(weights)
    w = [x / total_weight for x in weights]
    costs = [
        k.prompt_tokens * c.usd_per_input_token
        + k.max_output_tokens * c.usd_per_output_token
        + c.usd_per_request
        for c in candidates
    ]
    rejections = []
    for c, cost in zip(candidates, costs, strict=True):
        reasons = []
        if c.model_id in k.excluded_models:
            reasons.append("excluded by the request")
        if not c.healthy:
            reasons.append("unhealthy")
        if k.required_capabilities & ~c.capabilities:
            reasons.append("missing capabilities")
        needed = k.prompt_tokens + k.max_output_tokens
        if c.context_window and needed > c.context_window:
            reasons.append(
                f"context window {c.context_window} < prompt {k.prompt_tokens}"
                f" + max_output {k.max_output_tokens} tokens"
            )
        if k.max_latency_ms and c.latency_ms > k.max_latency_ms:
            reasons.append(f"latency {c.latency_ms} ms > max {k.max_latency_ms} ms")
        if k.max_cost_usd and cost > k.max_cost_usd:
            reasons.append(f"estimated cost ${cost} > max ${k.max_cost_usd}")
        rejections.append("; ".join(reasons))
    eligible = [i for i, r in enumerate(rejections) if not r]
    results: list[tuple[bool, float, str]] = [(False, 0.0, r) for r in rejections]
    if not eligible:
        return None, results
    known_latency = [candidates[i].latency_ms for i in eligible if candidates[i].latency_ms > 0]
    min_latency = min(known_latency, default=0.0)
    max_tps = max(candidates[i].tokens_per_second for i in eligible)
    min_cost = min(costs[i] for i in eligible)
    max_cost = max(costs[i] for i in eligible)

    def extras(c: RefCandidate) -> int:
        return bin(c.capabilities & ~k.required_capabilities).count("1")

    max_extras = max(extras(candidates[i]) for i in eligible)
    for i in eligible:
        c = candidates[i]
        latency = min_latency / c.latency_ms if c.latency_ms > 0 else 0.5
        throughput = c.tokens_per_second / max_tps if c.tokens_per_second > 0 else 0.5
        cost = 1.0 if max_cost <= min_cost else (max_cost - costs[i]) / (max_cost - min_cost)
        caps = 1.0 if max_extras == 0 else extras(c) / max_extras
        criteria = ((latency + throughput) / 2, cost, c.reliability, caps)
        total = min(1.0, max(0.0, sum(s * wi for s, wi in zip(criteria, w, strict=True))))
        results[i] = (True, total, "")
    chosen = min(eligible, key=lambda i: (-results[i][1], costs[i], candidates[i].model_id, i))
    return chosen, results


# ---- load balancing (native/src/balancer.rs) ---------------------------------


class ReferencePool:
    """In-flight counts and latency EWMAs; least_loaded and p2c picks."""

    def __init__(self, n: int, seed: int = 0) -> None:
        self.in_flight = [0] * n
        self.ewma = [0.0] * n
        self.usable = [True] * n
        self.cursor = 0
        self.rng = random.Random(seed)

    def least_loaded(self) -> int:
        n = len(self.in_flight)
        order = [(self.cursor + k) % n for k in range(n)]
        best = min((i for i in order if self.usable[i]), key=lambda i: self.in_flight[i])
        self.cursor = (best + 1) % n
        return best

    def p2c(self) -> int:
        usable = [i for i, ok in enumerate(self.usable) if ok]
        if len(usable) == 1:
            return usable[0]
        a, b = self.rng.sample(usable, 2)

        def load(i: int) -> float:
            return (self.ewma[i] + 1.0) * (self.in_flight[i] + 1)

        return b if load(b) < load(a) else a


# ---- A/B split (native/src/traffic_split.rs) ---------------------------------


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & MASK64
    return h


def mix64(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def assign_arm(key: str, weights: list[float]) -> int:
    """The arm for `key`: FNV-1a 64, SplitMix64 finaliser, top 53 bits as [0, 1)."""
    largest = max(weights)
    scaled = [w / largest for w in weights]
    target = (mix64(fnv1a64(key.encode())) >> 11) * 2.0**-53 * sum(scaled)
    cumulative = 0.0
    last = 0
    for i, w in enumerate(scaled):
        if w == 0.0:
            continue
        last = i
        cumulative += w
        if target < cumulative:
            return i
    return last
