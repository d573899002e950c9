"""An anytime-valid comparison of two arms: look after every request, call a winner honestly.

A fixed-sample test checked after every request calls false winners far more
often than its error rate says. This one is the mixture sequential
probability ratio test (mSPRT) of Johari, Koomen, Pekelis and Walsh, "Always
Valid Inference: Continuous Monitoring of A/B Tests" (Operations Research,
2022), for the difference of two means: with `d` the difference of the arms'
means and `s²` its variance (each arm's variance over its count), the
likelihood ratio of "the arms differ" against "they do not", mixed over
differences drawn from N(0, τ²), is

    Λ = sqrt(s² / (s² + τ²)) · exp(τ² d² / (2 s² (s² + τ²)))

and the always-valid p-value is the running minimum of 1/Λ. Stopping the
first time it falls to alpha keeps the chance of ever calling a false winner at
most alpha however often one looks (for normal data with known variances; the
variances here are the arms' sample variances, so the test only starts once
each arm has `min_samples` results). τ sets which differences it is quickest
to find: τ = `effect_in_sds` pooled standard deviations (½ by default).

`MeanComparison` takes one result at a time (a latency in ms, 1/0 for an
error, a feedback score) and says whether the arms differ, at what
confidence (1 - p), and which is the better one, lower or higher as the
metric wants.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class RunningMean:
    """Count, mean and variance of a stream of numbers (Welford's method)."""

    n: int = 0
    mean: float = 0.0
    _m2: float = 0.0

    def add(self, x: float) -> None:
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self._m2 += delta * (x - self.mean)

    @property
    def variance(self) -> float:
        return self._m2 / (self.n - 1) if self.n > 1 else 0.0


@dataclass
class MeanComparison:
    """Arm A against arm B on one metric; `lower_is_better` for latency and errors."""

    alpha: float = 0.05
    lower_is_better: bool = True
    min_samples: int = 30
    effect_in_sds: float = 0.5
    a: RunningMean = field(default_factory=RunningMean)
    b: RunningMean = field(default_factory=RunningMean)
    p_value: float = 1.0  # always valid: the running minimum of 1/Λ

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be between 0 and 1, not {self.alpha}")

    def add(self, arm: str, value: float) -> None:
        """One result of arm "a" or "b"; the p-value is updated at once."""
        (self.a if arm == "a" else self.b).add(value)
        self._update()

    def _update(self) -> None:
        a, b = self.a, self.b
        if min(a.n, b.n) < self.min_samples:
            return
        s2 = a.variance / a.n + b.variance / b.n
        pooled = (a.variance + b.variance) / 2
        if s2 <= 0 or pooled <= 0:
            return  # no spread yet (no error on either arm): nothing to compare
        tau2 = self.effect_in_sds**2 * pooled
        d = b.mean - a.mean
        log_lr = 0.5 * math.log(s2 / (s2 + tau2)) + tau2 * d * d / (2 * s2 * (s2 + tau2))
        self.p_value = min(self.p_value, math.exp(-log_lr) if log_lr < 700 else 0.0)

    @property
    def decided(self) -> bool:
        return self.p_value <= self.alpha

    @property
    def confidence(self) -> float:
        return 1.0 - self.p_value

    @property
    def better(self) -> str:
        """Which arm is better, "a" or "b", once `decided`; else ""."""
        if not self.decided:
            return ""
        b_lower = self.b.mean < self.a.mean
        return "b" if b_lower == self.lower_is_better else "a"
