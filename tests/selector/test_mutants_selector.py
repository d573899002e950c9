"""Behaviours of the selector that mutation testing found unchecked (docs/testing.md).

In process, through `Selector` with a fixed catalog: the answer's every field,
and each error's whole message.
"""

from __future__ import annotations

import pytest

from modelyard.assembly.selection import selection_settings
from modelyard.config import parse_config
from modelyard.selector.candidates import CandidatePool
from modelyard.selector.selection import Selector
from modelyard.selector.task_analysis import analyse
from modelyard_client.errors import ModelNotFound, NoSuitableModel
from modelyard_client.v1 import common_pb2, selector_pb2

C = common_pb2
BACKEND = "  backends:\n    p: {kind: openai_compat, endpoint: 'http://127.0.0.1:9/v1'}\n"
PINNED = "  selection:\n    agents:\n      bot: {model: p/pinned}\n"


def _model(model_id: str, *, context_window: int = 4096, memory: int = 0) -> C.ModelEntry:
    entry = C.ModelEntry(
        id=model_id,
        provider="p",
        capabilities=[C.CAPABILITY_CHAT],
        input_modalities=[C.MODALITY_TEXT],
        context_window=context_window,
    )
    entry.resources.memory_bytes = memory
    entry.deployments.add(backend="p", endpoint="127.0.0.1:9")
    return entry


def _selector(*entries: C.ModelEntry, yaml: str = "") -> Selector:
    config = parse_config("model_system:\n" + BACKEND + yaml, env={})
    return Selector(
        CandidatePool(lambda: list(entries), lambda: 1), selection_settings(config.selection)
    )


def _chat(text: str = "hi", agent: str = "") -> selector_pb2.SelectRequest:
    request = selector_pb2.SelectRequest()
    request.task.agent_id = agent
    request.task.input.chat.messages.add(role="user", content=text)
    return request


def test_a_pinned_agent_gets_its_model_as_the_one_eligible_candidate() -> None:
    reply = _selector(_model("p/other"), _model("p/pinned"), yaml=PINNED).select(_chat(agent="bot"))
    assert reply.model_id == "p/pinned"
    assert list(reply.candidates) == [
        selector_pb2.CandidateScore(model_id="p/pinned", total=1.0, eligible=True)
    ]
    expected = analyse(_chat(agent="bot").task, _chat().task.input, C.GenerationParams())
    expected.ClearField("input")
    assert reply.analysed_task == expected


def test_a_pin_to_a_missing_model_names_the_model_and_the_agent() -> None:
    with pytest.raises(ModelNotFound) as caught:
        _selector(_model("p/other"), yaml=PINNED).select(_chat(agent="bot"))
    assert caught.value.model_id == "p/pinned"
    assert str(caught.value) == (
        "model 'p/pinned' is not in the catalog (agent 'bot' is pinned to it)"
    )


def test_a_pin_to_a_model_that_cannot_serve_says_why() -> None:
    sick = _model("p/pinned")
    sick.health = C.HEALTH_STATUS_UNAVAILABLE
    sick.health_reason = "backend down"
    with pytest.raises(NoSuitableModel) as caught:
        _selector(sick, yaml=PINNED).select(_chat(agent="bot"))
    assert str(caught.value) == (
        "agent 'bot' is pinned to 'p/pinned', which cannot serve now: backend down"
    )


def test_an_empty_catalog_is_no_suitable_model() -> None:
    with pytest.raises(NoSuitableModel) as caught:
        _selector().select(_chat())
    assert str(caught.value) == "the catalog has no models to choose from"


def test_unknown_agents_and_no_agent_use_the_default_policy() -> None:
    selector = _selector(_model("p/a"), yaml=PINNED)
    for agent in ("", "someone-else"):
        assert selector.select(_chat(agent=agent)).model_id == "p/a"


def test_candidates_restrict_the_choice_and_keep_the_excluded_models() -> None:
    selector = _selector(_model("p/a"), _model("p/b"), _model("p/c"))
    request = _chat()
    request.candidates.extend(["p/b", "p/c"])
    request.constraints.excluded_models.append("p/c")
    reply = selector.select(request)
    assert reply.model_id == "p/b"
    assert {c.model_id: c.eligible for c in reply.candidates} == {
        "p/a": False,
        "p/b": True,
        "p/c": False,
    }


def test_no_suitable_model_lists_every_candidates_rejection() -> None:
    selector = _selector(_model("p/a", memory=2000), _model("p/b", memory=3000))
    request = _chat()
    request.constraints.max_memory_bytes = 1000
    with pytest.raises(NoSuitableModel) as caught:
        selector.select(request)
    assert str(caught.value) == (
        "no model meets the constraints (p/a: memory 2000 bytes > max 1000 bytes; "
        "p/b: memory 3000 bytes > max 1000 bytes)"
    )


def test_the_tasks_output_budget_and_modality_reach_the_hard_constraints() -> None:
    selector = _selector(_model("p/small", context_window=100), _model("p/large"))
    request = _chat()
    request.task.max_output_tokens = 500
    reply = selector.select(request)
    assert reply.model_id == "p/large"
    (small,) = (c for c in reply.candidates if c.model_id == "p/small")
    assert small.rejection_reason.startswith("context window 100 < prompt ")
    assert small.rejection_reason.endswith(" + max_output 500 tokens")
    image = selector_pb2.SelectRequest()
    image.task.input.image.data = b"\x89PNG"
    with pytest.raises(NoSuitableModel) as caught:
        selector.select(image)
    assert str(caught.value) == (
        "no model meets the constraints "
        "(p/large: missing capabilities: image_classification; does not accept image input; "
        "p/small: missing capabilities: image_classification; does not accept image input)"
    )


def test_a_preferred_backend_is_a_hard_constraint() -> None:
    request = _chat()
    request.constraints.preferred_backend = "elsewhere"
    with pytest.raises(NoSuitableModel) as caught:
        _selector(_model("p/a")).select(request)
    assert str(caught.value) == (
        "no model meets the constraints (p/a: backend 'p' is not the required backend 'elsewhere')"
    )


def test_a_tensor_input_is_a_classification_task() -> None:
    task = selector_pb2.Task()
    task.input.tensors.tensors.add(name="x")
    assert analyse(task, task.input, C.GenerationParams()).type == (
        selector_pb2.TASK_TYPE_CLASSIFICATION
    )


def test_candidates_carry_throughput_output_price_and_need_no_deployment() -> None:
    fast = _model("p/fast")
    fast.performance.tokens_per_second = 100.0
    fast.cost.usd_per_output_token = 1e-6
    slow = _model("p/slow")
    slow.performance.tokens_per_second = 50.0
    slow.cost.usd_per_output_token = 3e-6
    bare = C.ModelEntry(
        id="p/bare",
        provider="p",
        capabilities=[C.CAPABILITY_CHAT],
        input_modalities=[C.MODALITY_TEXT],
        context_window=4096,
    )
    request = _chat()
    request.task.max_output_tokens = 100
    reply = _selector(fast, slow, bare).select(request)
    scores = {c.model_id: {s.criterion: s.value for s in c.criteria} for c in reply.candidates}
    # Throughput relative to the fastest (unknown latency: 0.5); cost over the output budget.
    assert scores["p/fast"]["performance"] == pytest.approx((0.5 + 1.0) / 2)
    assert scores["p/slow"]["performance"] == pytest.approx((0.5 + 0.5) / 2)
    assert (scores["p/fast"]["cost"], scores["p/slow"]["cost"]) == (1.0, 0.0)
    # No deployment: not servable, so rejected as unhealthy (and no IndexError).
    (bare_score,) = (c for c in reply.candidates if c.model_id == "p/bare")
    assert bare_score.rejection_reason == "unhealthy"
    assert reply.model_id == "p/fast"
