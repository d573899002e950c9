"""The A/B comparison is anytime valid: looking after every request calls no more false winners
than its error rate, and a real difference is found early, the right way round.

Seeded simulations, each arm's results drawn from a known distribution.
"""

from __future__ import annotations

import random
import statistics

import pytest

from modelyard.hotswap.sequential import MeanComparison, RunningMean

RUNS = 200
REQUESTS = 2000  # per run, split at random between the arms


def _run(seed: int, draw_a: float, draw_b: float, sd: float, **kw: float) -> tuple[str, int]:
    """(the better arm called, or "", and after how many requests) for one seeded run."""
    rng = random.Random(seed)
    test = MeanComparison(**kw)  # type: ignore[arg-type]
    for i in range(1, REQUESTS + 1):
        arm = "a" if rng.random() < 0.5 else "b"
        test.add(arm, rng.gauss(draw_a if arm == "a" else draw_b, sd))
        if test.decided:  # looked at after every request
            return test.better, i
    return "", REQUESTS


def test_identical_arms_call_no_winner_in_at_least_95_percent_of_runs() -> None:
    called = [_run(seed, 100.0, 100.0, 20.0)[0] for seed in range(RUNS)]
    false_winners = sum(1 for c in called if c)
    print(f"\n{false_winners} false winners in {RUNS} runs of {REQUESTS} requests")
    assert false_winners <= RUNS * 0.05


def test_identical_error_rates_call_no_winner_in_at_least_95_percent_of_runs() -> None:
    def run(seed: int) -> str:
        rng = random.Random(seed)
        test = MeanComparison()
        for _ in range(REQUESTS):
            test.add("a" if rng.random() < 0.5 else "b", 1.0 if rng.random() < 0.1 else 0.0)
            if test.decided:
                return test.better
        return ""

    assert sum(1 for seed in range(RUNS) if run(seed)) <= RUNS * 0.05


def test_a_slower_arm_is_called_the_loser_early_with_the_configured_confidence() -> None:
    # B is slower by half a standard deviation (10 ms on 20): a fixed-sample test
    # at 5 % and 80 % power needs ~126 requests per arm, 252 in all.
    outcomes = [_run(seed, 100.0, 110.0, 20.0) for seed in range(100)]
    called = [c for c, _ in outcomes]
    after = [n for c, n in outcomes if c]
    print(
        f"\ncalled {called.count('a')}/100 for A, median after {statistics.median(after)} requests"
    )
    assert called.count("b") == 0  # never the slower arm
    assert called.count("a") >= 95
    assert statistics.median(after) < 600


def test_the_confidence_is_one_minus_the_always_valid_p_value() -> None:
    rng = random.Random(7)
    test = MeanComparison(alpha=0.01)
    lowest = 1.0
    for _ in range(400):
        arm = "a" if rng.random() < 0.5 else "b"
        test.add(arm, rng.gauss(100.0 if arm == "a" else 130.0, 20.0))
        assert test.p_value <= lowest  # never rises: a look cannot undo an earlier one
        lowest = test.p_value
    assert test.decided and test.better == "a"
    assert test.confidence == pytest.approx(1 - test.p_value)
    assert test.confidence >= 0.99


def test_nothing_is_called_before_each_arm_has_its_minimum_of_results() -> None:
    test = MeanComparison(min_samples=30)
    for i in range(29):
        test.add("a", 100.0 + i)
        test.add("b", 1000.0 + i)
    assert (test.p_value, test.decided, test.better) == (1.0, False, "")
    test.add("a", 100.0)
    test.add("b", 1000.0)
    assert test.decided and test.better == "a"


def test_higher_is_better_for_a_score_and_no_spread_decides_nothing() -> None:
    test = MeanComparison(lower_is_better=False, min_samples=5)
    for i in range(50):
        test.add("a", 0.2 + 0.01 * (i % 3))
        test.add("b", 0.8 + 0.01 * (i % 3))
    assert test.better == "b"
    flat = MeanComparison(min_samples=5)
    for _ in range(50):
        flat.add("a", 0.0)
        flat.add("b", 0.0)
    assert not flat.decided


def test_a_bad_error_rate_is_refused() -> None:
    with pytest.raises(ValueError, match=r"alpha must be between 0 and 1, not 1\.5"):
        MeanComparison(alpha=1.5)


def test_the_running_mean_and_variance_are_exact() -> None:
    values = [3.0, 7.0, 7.0, 19.0]
    running = RunningMean()
    for v in values:
        running.add(v)
    assert (running.n, running.mean) == (4, 9.0)
    assert running.variance == pytest.approx(statistics.variance(values))
