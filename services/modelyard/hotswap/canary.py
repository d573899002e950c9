"""A canary swap's steps: how much traffic the new version takes, and when it regresses.

At each step the alias's calls are split "old"/"new" by the step's percent;
the gateways report each call's outcome, counted here for the step alone.
The step is judged once the new version has answered `step_requests` calls
and the step has lasted `step_s`:

- its error rate regresses when it exceeds the old version's by more than
  `max_error_rate_increase` and by more than chance explains (a one-sided
  two-proportion z-test at 95 %: a few unlucky calls out of 50 are not a
  regression);
- its p95 latency regresses when it exceeds the old version's by more than
  `max_latency_p95_increase` (a fraction) and by at least
  `min_latency_increase_ms`.

A regression rolls the swap back (`rollback_on_failure`) or holds it at the
step for a person to decide; otherwise the swap advances to the next step.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field

from modelyard.hotswap.arm_stats import ArmStats
from modelyard_client.v1 import hotswap_pb2

# One-sided 95 %: the new version's extra errors are not chance.
Z_95 = 1.6449
# p95s are compared once each side has this many successful calls.
MIN_LATENCIES = 20


@dataclass(frozen=True)
class CanaryPolicy:
    """`hot_swap.canary` and `hot_swap.rollback_on_failure`."""

    steps: tuple[float, ...] = (5, 25, 50, 100)
    step_requests: int = 50
    step_s: float = 10.0
    max_error_rate_increase: float = 0.05
    max_latency_p95_increase: float = 0.5
    min_latency_increase_ms: float = 20.0
    rollback_on_failure: bool = True


@dataclass
class CanaryStep:
    """One step's figures: the old and the new version's calls since it began."""

    percent: float
    old: ArmStats
    new: ArmStats
    started: float = field(default_factory=time.monotonic)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, outcome: hotswap_pb2.ArmOutcome) -> None:
        arm = self.new if outcome.arm == "new" else self.old if outcome.arm == "old" else None
        if arm is not None:
            arm.add(outcome)
            self.changed.set()

    async def judged(self, policy: CanaryPolicy) -> hotswap_pb2.CanaryStep:
        """Wait until the step can be judged; its decision, with the figures and why."""
        while True:
            if self.new.requests >= policy.step_requests:
                waited = time.monotonic() - self.started
                if waited >= policy.step_s:
                    return judge(self, policy)
                await asyncio.sleep(policy.step_s - waited)
                continue
            self.changed.clear()
            await self.changed.wait()


def judge(step: CanaryStep, policy: CanaryPolicy) -> hotswap_pb2.CanaryStep:
    old, new = step.old, step.new
    old_p95, new_p95 = old.latency_ms.percentile(95), new.latency_ms.percentile(95)
    decided = hotswap_pb2.CanaryStep(
        percent=step.percent,
        old_requests=old.requests,
        new_requests=new.requests,
        old_error_rate=old.error_rate,
        new_error_rate=new.error_rate,
        old_latency_ms_p95=old_p95,
        new_latency_ms_p95=new_p95,
    )
    decided.decided_at.GetCurrentTime()
    problems = []
    if _more_errors(old, new, policy.max_error_rate_increase):
        problems.append(
            f"error rate {new.error_rate:.1%} against {old.error_rate:.1%} "
            f"(more than {policy.max_error_rate_increase:.1%} above, beyond chance)"
        )
    if (
        min(old.latency_ms.seen, new.latency_ms.seen) >= MIN_LATENCIES
        and new_p95 > old_p95 * (1 + policy.max_latency_p95_increase)
        and new_p95 - old_p95 >= policy.min_latency_increase_ms
    ):
        problems.append(
            f"p95 latency {new_p95:.1f} ms against {old_p95:.1f} ms "
            f"(more than {policy.max_latency_p95_increase:.0%} and "
            f"{policy.min_latency_increase_ms:g} ms above)"
        )
    if problems:
        decided.decision = "rollback" if policy.rollback_on_failure else "hold"
        decided.reason = f"the new version regressed at {step.percent:g} %: " + "; ".join(problems)
    else:
        decided.decision = "advance"
        decided.reason = (
            f"at {step.percent:g} % the new version's {new.requests} calls: error rate "
            f"{new.error_rate:.1%} (old {old.error_rate:.1%}), p95 {new_p95:.1f} ms "
            f"(old {old_p95:.1f} ms)"
        )
    return decided


def _more_errors(old: ArmStats, new: ArmStats, max_increase: float) -> bool:
    if new.error_rate - old.error_rate <= max_increase:
        return False
    if old.requests == 0:
        return True  # nothing to compare with: the excess alone decides
    pooled = (old.errors + new.errors) / (old.requests + new.requests)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / old.requests + 1 / new.requests))
    return spread == 0 or (new.error_rate - old.error_rate) / spread >= Z_95


def split_for(swap_id: str, old_model: str, new_model: str, percent: float) -> hotswap_pb2.Split:
    """The route's split at `percent`: "old" and "new" arms, each call drawn on its own."""
    share = percent / 100
    return hotswap_pb2.Split(
        id=swap_id,
        kind=hotswap_pb2.Split.KIND_CANARY,
        arms=[
            hotswap_pb2.ABArm(name="old", model_id=old_model, weight=1 - share),
            hotswap_pb2.ABArm(name="new", model_id=new_model, weight=share),
        ],
        sticky_by=hotswap_pb2.STICKY_BY_REQUEST,
    )
