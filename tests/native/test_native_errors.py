"""Every error of the native core arrives as its exact class of `modelyard_client.errors`.

One case per variant of each Rust error enum (native/src/*/error.rs) plus the
PyO3 layer's own int-range check; `native/src/py/errors.rs` is what maps them.
"""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Callable

import pytest

from modelyard._native import (
    STRATEGIES,
    Candidate,
    CandidateSet,
    Constraints,
    DeploymentPool,
    TokenBucket,
    Weights,
    assign_arm,
)
from modelyard_client.errors import BackendUnavailable, InvalidRequest, ModelyardError

ONE_DEPLOYMENT = [("host0:50051", "eu", 1.0)]


def unusable_pool() -> DeploymentPool:
    pool = DeploymentPool(ONE_DEPLOYMENT)
    pool.set_healthy(0, False)
    return pool


CASES: list[tuple[str, Callable[[], object], type[ModelyardError], str]] = [
    # BucketError
    (
        "BucketError::InvalidParameter",
        lambda: TokenBucket(0.0, 1.0),
        InvalidRequest,
        "capacity must be a finite number > 0, got 0",
    ),
    (
        "BucketError::ExceedsCapacity",
        lambda: TokenBucket(1.0, 0.0).try_take(2.0, now=0.0),
        InvalidRequest,
        "amount 2 exceeds the bucket capacity of 1",
    ),
    # ScoringError
    (
        "ScoringError::NoCandidates",
        lambda: CandidateSet([]),
        InvalidRequest,
        "no candidates",
    ),
    (
        "ScoringError::InvalidMetric",
        lambda: Candidate("m", latency_ms=-1.0),
        InvalidRequest,
        "candidate 'm': latency_ms must be a finite number >= 0, got -1",
    ),
    (
        "ScoringError::InvalidConstraint",
        lambda: Constraints(max_cost_usd=math.nan),
        InvalidRequest,
        "max_cost_usd must be a finite number >= 0, got NaN",
    ),
    (
        "ScoringError::InvalidWeight",
        lambda: Weights(performance=-1.0),
        InvalidRequest,
        "weights.performance must be a finite number >= 0, got -1",
    ),
    (
        "ScoringError::ZeroWeights",
        lambda: Weights(0.0, 0.0, 0.0, 0.0),
        InvalidRequest,
        "weights must not all be zero (performance, cost, reliability, capabilities)",
    ),
    # BalanceError, the outlier policy's included
    (
        "BalanceError::NoDeployments",
        lambda: DeploymentPool([]),
        InvalidRequest,
        "no deployments",
    ),
    (
        "BalanceError::InvalidParameter",
        lambda: DeploymentPool(ONE_DEPLOYMENT, ewma_alpha=0.0),
        InvalidRequest,
        "ewma_alpha must be a number in (0, 1], got 0",
    ),
    (
        "BalanceError::InvalidParameter (outlier policy)",
        lambda: DeploymentPool(ONE_DEPLOYMENT, consecutive_failures=0),
        InvalidRequest,
        "consecutive_failures must be an integer >= 1, got 0",
    ),
    (
        "BalanceError::UnknownStrategy",
        lambda: DeploymentPool(ONE_DEPLOYMENT).pick("random", now=0.0),
        InvalidRequest,
        "unknown strategy 'random'; valid: "
        "round_robin, least_loaded, p2c, cost_optimized, region_affinity",
    ),
    (
        "BalanceError::IndexOutOfRange",
        lambda: DeploymentPool(ONE_DEPLOYMENT).start(1),
        InvalidRequest,
        "deployment index 1 is out of range for a pool of 1",
    ),
    (
        "BalanceError::NoneUsable",
        lambda: unusable_pool().pick("round_robin", now=0.0),
        BackendUnavailable,
        "no usable deployment among 1: 1 unhealthy, 0 ejected",
    ),
    # SplitError
    (
        "SplitError::NoArms",
        lambda: assign_arm("k", []),
        InvalidRequest,
        "weights must not be empty",
    ),
    (
        "SplitError::InvalidWeight",
        lambda: assign_arm("k", [1.0, -1.0]),
        InvalidRequest,
        "weights[1] must be a finite number >= 0, got -1",
    ),
    (
        "SplitError::AllZero",
        lambda: assign_arm("k", [0.0, 0.0]),
        InvalidRequest,
        "weights must not all be zero",
    ),
    # The PyO3 layer's own check of int arguments
    (
        "py::unsigned",
        lambda: Candidate("m", capabilities=-1),
        InvalidRequest,
        "capabilities must be an integer between 0 and 2**64-1, got -1",
    ),
]


@pytest.mark.parametrize(
    ("call", "expected", "message"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_each_core_error_raises_its_exact_modelyard_class(
    call: Callable[[], object], expected: type[ModelyardError], message: str
) -> None:
    with pytest.raises(ModelyardError) as caught:
        call()
    assert type(caught.value) is expected
    assert caught.value.message == message


def test_importing_the_native_module_imports_neither_errors_nor_grpc() -> None:
    # The exception classes are imported when the first one is raised.
    probe = (
        "import sys, modelyard._native; "
        "print(sorted({'grpc', 'modelyard_client.errors'} & set(sys.modules)))"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert found.strip() == "[]"


def test_strategies_are_exported_once_in_documentation_order() -> None:
    assert STRATEGIES == ("round_robin", "least_loaded", "p2c", "cost_optimized", "region_affinity")
    pool = DeploymentPool(ONE_DEPLOYMENT)
    assert [pool.pick(name, now=0.0) for name in STRATEGIES] == [0] * len(STRATEGIES)
