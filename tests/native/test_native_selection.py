"""Model selection through `modelyard._native`: CandidateSet.select and its results."""

from __future__ import annotations

import math
import threading

import pytest

from modelyard._native import Candidate, CandidateSet, Constraints, Selection, Weights
from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import common_pb2 as common


def mask(*values: int) -> int:
    """A capability or modality bitmask from enum values (bit i = value i)."""
    bits = 0
    for value in values:
        bits |= 1 << value
    return bits


CHAT = mask(common.CAPABILITY_CHAT)
VISION_TOOLS = mask(common.CAPABILITY_VISION, common.CAPABILITY_TOOLS)


def catalog() -> list[Candidate]:
    return [
        Candidate(
            "openai/gpt-big",
            capabilities=CHAT | VISION_TOOLS,
            modalities=mask(common.MODALITY_TEXT, common.MODALITY_IMAGE),
            context_window=128_000,
            latency_ms=400.0,
            tokens_per_second=80.0,
            usd_per_input_token=5e-6,
            usd_per_output_token=15e-6,
            reliability=0.999,
            backend="api",
        ),
        Candidate(
            "local/gemma",
            capabilities=CHAT,
            modalities=mask(common.MODALITY_TEXT),
            context_window=2048,
            latency_ms=120.0,
            tokens_per_second=40.0,
            reliability=0.98,
            memory_bytes=300_000_000,
            backend="local",
        ),
        Candidate(
            "ollama/llama",
            capabilities=CHAT | mask(common.CAPABILITY_TOOLS),
            modalities=mask(common.MODALITY_TEXT),
            context_window=8192,
            latency_ms=200.0,
            tokens_per_second=60.0,
            reliability=0.99,
            memory_bytes=5_000_000_000,
            backend="ollama",
            healthy=False,
        ),
    ]


def test_select_picks_the_best_eligible_and_explains_the_rest() -> None:
    candidates = CandidateSet(catalog())
    constraints = Constraints(
        required_capabilities=CHAT,
        input_modality=common.MODALITY_TEXT,
        prompt_tokens=3000,
        max_output_tokens=256,
    )
    selection = candidates.select(constraints, Weights())
    assert isinstance(selection, Selection)
    assert selection.chosen == 0
    assert selection.ranked() == [0]
    assert len(selection) == 3
    gemma, llama = selection[1], selection[2]
    assert not gemma.eligible
    assert gemma.rejection == "context window 2048 < prompt 3000 + max_output 256 tokens"
    assert llama.rejection == "unhealthy"
    assert (gemma.total, gemma.criteria) == (0.0, (0.0, 0.0, 0.0, 0.0))
    best = selection[0]
    assert (best.index, best.model_id, best.eligible, best.rejection) == (
        0,
        "openai/gpt-big",
        True,
        "",
    )
    assert best.estimated_cost_usd == pytest.approx(3000 * 5e-6 + 256 * 15e-6)
    assert selection[-1].model_id == "ollama/llama"


def test_missing_capabilities_are_named_as_in_the_proto() -> None:
    selection = CandidateSet(catalog()).select(
        Constraints(required_capabilities=VISION_TOOLS, require_healthy=False), Weights()
    )
    assert selection.chosen == 0
    assert selection[1].rejection == "missing capabilities: vision, tools"
    assert selection[2].rejection == "missing capabilities: vision"


def test_weights_decide_between_fast_and_cheap() -> None:
    candidates = CandidateSet(catalog())
    constraints = Constraints(prompt_tokens=500, max_output_tokens=100)
    by_cost = candidates.select(
        constraints, Weights(performance=0, cost=1, reliability=0, capabilities=0)
    )
    by_speed = candidates.select(constraints, Weights(1, 0, 0, 0))
    by_breadth = candidates.select(constraints, Weights(0, 0, 0, 1))
    assert by_cost.chosen == 1  # local is free
    assert by_speed.chosen == 1  # and fastest
    assert by_breadth.chosen == 0
    assert by_cost.ranked() == [1, 0]


def test_scores_are_normalised_and_results_can_be_iterated() -> None:
    selection = CandidateSet(catalog()).select(Constraints(require_healthy=False), Weights())
    scores = list(iter(selection))  # the sequence protocol: __len__ and __getitem__
    assert [s.index for s in scores] == [0, 1, 2]
    assert [s.model_id for s in selection.scores()] == [s.model_id for s in scores]
    for score in scores:
        assert score.eligible
        for value in (score.total, *score.criteria):
            assert 0.0 <= value <= 1.0
        assert score.criteria == (
            score.performance,
            score.cost,
            score.reliability,
            score.capabilities,
        )
    with pytest.raises(IndexError):
        selection[3]


def test_every_hard_constraint_can_reject() -> None:
    def at_limits(
        model_id: str,
        *,
        usd_per_request: float = 0.001,
        reliability: float = 0.985,
        context_window: int = 200,
    ) -> Candidate:
        # Each value equal to its constraint below: equal passes, for every constraint.
        return Candidate(
            model_id,
            capabilities=CHAT | mask(common.CAPABILITY_TOOLS),
            modalities=mask(common.MODALITY_TEXT, common.MODALITY_IMAGE),
            context_window=context_window,
            latency_ms=150.0,
            usd_per_request=usd_per_request,
            reliability=reliability,
            memory_bytes=100_000_000,
            backend="local",
        )

    candidates = CandidateSet(
        [
            *catalog(),
            at_limits("local/at-limits"),
            at_limits("local/cost-over", usd_per_request=math.nextafter(0.001, 1.0)),
            at_limits("local/unreliable", reliability=math.nextafter(0.985, 0.0)),
            at_limits("local/short", context_window=199),
        ]
    )
    constraints = Constraints(
        required_capabilities=CHAT | mask(common.CAPABILITY_TOOLS),
        input_modality=common.MODALITY_IMAGE,
        prompt_tokens=100,
        max_output_tokens=100,
        max_latency_ms=150.0,
        max_cost_usd=0.001,
        min_reliability=0.985,
        preferred_backend="local",
        excluded_models=["local/gemma"],
        max_memory_bytes=100_000_000,
    )
    selection = candidates.select(constraints, Weights())
    # Every constraint rejects someone; each candidate's whole reason, in order.
    assert [(s.model_id, s.rejection) for s in selection.scores()] == [
        (
            "openai/gpt-big",
            "backend 'api' is not the required backend 'local'; latency 400 ms > max 150 ms; "
            "estimated cost $0.002 > max $0.001",
        ),
        (
            "local/gemma",
            "excluded by the request; missing capabilities: tools; does not accept image input; "
            "reliability 0.98 < min 0.985; memory 300000000 bytes > max 100000000 bytes",
        ),
        (
            "ollama/llama",
            "backend 'ollama' is not the required backend 'local'; unhealthy; "
            "does not accept image input; latency 200 ms > max 150 ms; "
            "memory 5000000000 bytes > max 100000000 bytes",
        ),
        ("local/at-limits", ""),
        ("local/cost-over", "estimated cost $0.0010000000000000002 > max $0.001"),
        ("local/unreliable", "reliability 0.9849999999999999 < min 0.985"),
        ("local/short", "context window 199 < prompt 100 + max_output 100 tokens"),
    ]
    assert (selection.chosen, selection.ranked()) == (3, [3])


def test_ties_break_by_cost_then_model_id() -> None:
    candidates = CandidateSet(
        [
            Candidate("b", latency_ms=100.0, reliability=0.9),
            Candidate("a", latency_ms=100.0, reliability=0.9),
            Candidate("c", latency_ms=100.0, reliability=0.9, usd_per_request=1.0),
        ]
    )
    selection = candidates.select(Constraints(), Weights(0, 0, 1, 0))
    assert selection.chosen == 1
    assert selection.ranked() == [1, 0, 2]


def test_weights_are_normalised_and_validated() -> None:
    weights = Weights(2, 1, 1, 0)
    assert (weights.performance, weights.cost, weights.reliability, weights.capabilities) == (
        0.5,
        0.25,
        0.25,
        0.0,
    )
    with pytest.raises(InvalidRequest, match=r"weights\.cost must be a finite number >= 0, got -1"):
        Weights(1, -1, 1, 1)
    with pytest.raises(InvalidRequest, match=r"weights\.reliability .* got NaN"):
        Weights(1, 1, math.nan, 1)
    with pytest.raises(InvalidRequest, match="weights must not all be zero"):
        Weights(0, 0, 0, 0)


def test_bad_candidates_and_constraints_raise_invalid_request() -> None:
    with pytest.raises(InvalidRequest, match="no candidates"):
        CandidateSet([])
    with pytest.raises(InvalidRequest, match=r"candidate 'x/nan': latency_ms .* got NaN"):
        Candidate("x/nan", latency_ms=math.nan)
    with pytest.raises(InvalidRequest, match=r"candidate 'x': usd_per_request .* got inf"):
        Candidate("x", usd_per_request=math.inf)
    with pytest.raises(InvalidRequest, match=r"candidate 'x': reliability .* got 1\.5"):
        Candidate("x", reliability=1.5)
    with pytest.raises(InvalidRequest, match="capabilities must be an integer"):
        Candidate("x", capabilities=-1)
    with pytest.raises(InvalidRequest, match="context_window must be an integer"):
        Candidate("x", context_window=2**64)
    with pytest.raises(InvalidRequest, match="max_cost_usd"):
        Constraints(max_cost_usd=-0.5)
    with pytest.raises(InvalidRequest, match="min_reliability"):
        Constraints(min_reliability=math.nan)
    with pytest.raises(InvalidRequest, match="input_modality"):
        Constraints(input_modality=64)
    with pytest.raises(TypeError):
        CandidateSet(["not a candidate"])  # type: ignore[list-item]  # the wrong type under test


def test_inputs_read_back() -> None:
    candidate = catalog()[1]
    assert (candidate.model_id, candidate.backend, candidate.memory_bytes) == (
        "local/gemma",
        "local",
        300_000_000,
    )
    assert candidate.healthy and candidate.context_window == 2048
    constraints = Constraints(excluded_models=("a", "b"), prompt_tokens=7)
    assert constraints.excluded_models == ["a", "b"]
    assert (constraints.prompt_tokens, constraints.require_healthy) == (7, True)
    candidates = CandidateSet(catalog())
    assert len(candidates) == 3
    assert candidates[-1].model_id == "ollama/llama"
    with pytest.raises(AttributeError):
        candidate.latency_ms = 1.0  # type: ignore[misc]  # the write under test


def test_select_is_safe_from_many_threads() -> None:
    """Selects on one shared set from four threads agree with a lone select.

    4,096 candidates is above the 2,048 beyond which `select` releases the GIL
    (`DETACH_ABOVE` in native/src/py/candidates.rs), so these selects can really
    overlap; with fewer the binding keeps the GIL and calls never overlap. It can
    show that scoring shares nothing mutable between calls on one set; it cannot
    show that they did overlap on a given run (the scheduler decides), nor a race
    in the smaller sets' path, which holds the GIL throughout.
    """
    n = 4096
    candidates = CandidateSet(
        [Candidate(f"m{i:04d}", latency_ms=10.0 + i % 97, reliability=0.9) for i in range(n)]
    )
    constraints, weights = Constraints(min_reliability=0.5), Weights()
    alone = candidates.select(constraints, weights)
    expected = (alone.chosen, alone.ranked()[:5], [s.total for s in alone.scores()])
    seen: list[tuple[int | None, list[int], list[float]]] = []

    def work() -> None:
        for _ in range(25):
            got = candidates.select(constraints, weights)
            seen.append((got.chosen, got.ranked()[:5], [s.total for s in got.scores()]))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert expected[:2] == (0, [0, 97, 194, 291, 388])
    assert seen == [expected] * 100
