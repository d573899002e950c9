"""The selector's settings: every default comes from the configuration."""

from __future__ import annotations

import pytest

from modelyard.assembly.selection import selection_settings
from modelyard.config import parse_config
from modelyard.config.schema import DEFAULT_WEIGHTS
from modelyard.selector.candidates import CandidatePool
from modelyard.selector.selection import Policy, Selector
from modelyard.v1 import common_pb2, selector_pb2

C = common_pb2
BACKEND = "  backends:\n    p: {kind: openai_compat, endpoint: 'http://127.0.0.1:9/v1'}\n"


def _model(model_id: str, *capabilities: C.Capability.ValueType) -> C.ModelEntry:
    entry = C.ModelEntry(
        id=model_id,
        provider="p",
        capabilities=[C.CAPABILITY_CHAT, *capabilities],
        input_modalities=[C.MODALITY_TEXT],
        context_window=4096,
    )
    entry.deployments.add(backend="p", endpoint="127.0.0.1:9")
    return entry


def _selector(yaml: str, *entries: C.ModelEntry) -> Selector:
    config = parse_config("model_system:\n" + BACKEND + yaml, env={})
    return Selector(
        CandidatePool(lambda: list(entries), lambda: 1), selection_settings(config.selection)
    )


def _chat(text: str) -> selector_pb2.SelectRequest:
    request = selector_pb2.SelectRequest()
    request.task.input.chat.messages.add(role="user", content=text)
    return request


def test_weights_left_out_of_the_file_are_the_configurations_defaults() -> None:
    reply = _selector("", _model("p/a")).select(_chat("hi"))
    [only] = reply.candidates
    weights = {c.criterion: c.weight for c in only.criteria}
    assert weights == pytest.approx(
        {
            "performance": DEFAULT_WEIGHTS.performance,
            "cost": DEFAULT_WEIGHTS.cost,
            "reliability": DEFAULT_WEIGHTS.reliability,
            "capabilities": DEFAULT_WEIGHTS.capabilities,
        }
    )
    assert (DEFAULT_WEIGHTS.performance, DEFAULT_WEIGHTS.cost) == (0.4, 0.3)
    assert (DEFAULT_WEIGHTS.reliability, DEFAULT_WEIGHTS.capabilities) == (0.2, 0.1)


def test_an_agent_is_pinned_to_a_model_id_or_given_a_policy() -> None:
    yaml = (
        "  selection:\n    agents:\n"
        "      support-bot: {model: p/cheap}\n"
        "      vision-bot: {policy: {weights: {performance: 1}}}\n"
    )
    settings = selection_settings(
        parse_config("model_system:\n" + BACKEND + yaml, env={}).selection
    )
    assert settings.agents == {
        "support-bot": "p/cheap",
        "vision-bot": Policy(weights=selector_pb2.SelectionWeights(performance=1)),
    }
