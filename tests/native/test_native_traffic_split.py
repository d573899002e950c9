"""Sticky A/B assignment through `modelyard._native.assign_arm`."""

from __future__ import annotations

import math
import subprocess
import sys
from collections import Counter

import native_reference as ref
import pytest

from modelyard._native import assign_arm
from modelyard_client.errors import InvalidRequest


def test_assignment_is_pinned() -> None:
    # The same pins as the Rust test: changing them reassigns every experiment.
    keys = ["user-1", "user-2", "user-3", "user-4", "", "ключ"]
    assert [assign_arm(k, [1.0, 1.0, 1.0]) for k in keys] == [2, 0, 1, 0, 2, 1]


def test_matches_an_independent_pure_python_hash() -> None:
    # bench/native_reference.py (on pytest's pythonpath): the hash written out in pure Python.
    weights_sets: list[list[float]] = [
        [1.0],
        [1.0, 1.0],
        [0.1, 0.2, 0.7],
        [0.0, 3.0, 0.0, 1.0],
        [5, 1, 1, 1, 1],
    ]
    for i in range(2000):
        key = f"tenant-{i % 7}/user-{i}-ü"
        for weights in weights_sets:
            assert assign_arm(key, weights) == ref.assign_arm(key, [float(w) for w in weights])


def test_stable_across_processes() -> None:
    # A fresh interpreter has a different str hash seed; the arm must not move.
    code = "from modelyard._native import assign_arm; print(assign_arm('user-42', [1, 2, 3]))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345"},
    )
    assert int(out.stdout) == assign_arm("user-42", [1, 2, 3])


def test_shares_follow_the_weights() -> None:
    n = 100_000
    counts = Counter(assign_arm(f"user-{i}", [1.0, 2.0, 7.0]) for i in range(n))
    expected = [n * 0.1, n * 0.2, n * 0.7]
    chi_square = sum((counts[arm] - e) ** 2 / e for arm, e in enumerate(expected))
    assert chi_square < 13.8  # 0.1% critical value, 2 degrees of freedom
    assert all(abs(counts[arm] / n - e / n) < 0.01 for arm, e in enumerate(expected))


def test_zero_weight_arms_get_nothing_and_tuples_work() -> None:
    assert {assign_arm(f"k{i}", (0.0, 1.0, 0.0)) for i in range(500)} == {1}
    many = [1.0] * 40  # longer than the stack buffer
    assert 0 <= assign_arm("k", many) < 40


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ([], "weights must not be empty"),
        ([1.0, -0.5], r"weights\[1\] must be a finite number >= 0, got -0\.5"),
        ([math.nan], r"weights\[0\] .* got NaN"),
        ([1.0, math.inf], r"weights\[1\] .* got inf"),
        ([0.0, 0.0], "weights must not all be zero"),
        ([0.0] * 20 + [-1.0], r"weights\[20\]"),
    ],
)
def test_bad_weights_raise_invalid_request(weights: list[float], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        assign_arm("k", weights)


def test_non_numbers_keep_type_error() -> None:
    with pytest.raises(TypeError):
        assign_arm("k", ["a"])  # type: ignore[list-item]  # the wrong type under test
    with pytest.raises(TypeError):
        assign_arm("k", "12")  # type: ignore[arg-type]  # the wrong type under test
