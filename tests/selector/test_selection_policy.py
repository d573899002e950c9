"""The selector's settings: every default comes from the configuration."""

from __future__ import annotations

import pytest

from modelyard.assembly.selection import selection_settings
from modelyard.config import parse_config
from modelyard.config.schema import DEFAULT_WEIGHTS
from modelyard.selector.candidates import CandidatePool
from modelyard.selector.selection import Policy, Selector
from modelyard_client.errors import NoSuitableModel
from modelyard_client.v1 import common_pb2, selector_pb2

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


def _priced(model_id: str, usd_per_request: float, error_rate: float) -> C.ModelEntry:
    entry = _model(model_id)
    entry.cost.usd_per_request = usd_per_request
    entry.performance.error_rate = error_rate  # reliability is 1 - error_rate
    return entry


# The policy allows $0.0015 and reliability 0.9. p/pricey and p/shaky pass those
# limits and fail the stricter ones the requests below ask for; p/ok sits exactly
# at the stricter ones.
LIMITS_POLICY = (
    "  selection:\n    constraints: {max_cost_per_request: 0.0015, min_reliability: 0.9}\n"
)
PRICED = (
    _priced("p/ok", 0.001, 0.05),
    _priced("p/pricey", 0.0012, 0.0),
    _priced("p/shaky", 0.0, 0.0625),
    _priced("p/worst", 0.002, 0.125),
)


def _rejections(reply: selector_pb2.SelectResponse) -> dict[str, str]:
    return {c.model_id: c.rejection_reason for c in reply.candidates}


def test_the_policys_cost_and_reliability_limits_apply_when_the_request_sets_none() -> None:
    reply = _selector(LIMITS_POLICY, *PRICED).select(_chat("hi"))
    assert _rejections(reply) == {
        "p/ok": "",
        "p/pricey": "",
        "p/shaky": "",
        "p/worst": "estimated cost $0.002 > max $0.0015; reliability 0.875 < min 0.9",
    }


def test_a_requests_max_cost_replaces_the_policys() -> None:
    request = _chat("hi")
    request.constraints.max_cost_per_request_usd = 0.001
    reply = _selector(LIMITS_POLICY, *PRICED).select(request)
    assert _rejections(reply) == {
        "p/ok": "",
        "p/pricey": "estimated cost $0.0012 > max $0.001",
        "p/shaky": "",
        "p/worst": "estimated cost $0.002 > max $0.001; reliability 0.875 < min 0.9",
    }


def test_a_requests_min_reliability_replaces_the_policys() -> None:
    request = _chat("hi")
    request.constraints.min_reliability = 0.95
    reply = _selector(LIMITS_POLICY, *PRICED).select(request)
    assert _rejections(reply) == {
        "p/ok": "",
        "p/pricey": "",
        "p/shaky": "reliability 0.9375 < min 0.95",
        "p/worst": "estimated cost $0.002 > max $0.0015; reliability 0.875 < min 0.95",
    }


def _windowed(model_id: str, window: int, *capabilities: C.Capability.ValueType) -> C.ModelEntry:
    entry = _model(model_id, *capabilities)
    entry.context_window = window
    return entry


def test_the_policys_least_context_window_leaves_smaller_and_unknown_windows_out() -> None:
    yaml = "  selection:\n    constraints: {min_context_window: 8192}\n"
    entries = (_windowed("p/small", 4096), _windowed("p/big", 32768), _windowed("p/unknown", 0))
    reply = _selector(yaml, *entries).select(_chat("hi"))
    assert reply.model_id == "p/big"
    assert {c.model_id: c.rejection_reason for c in reply.candidates} == {
        "p/big": "",
        "p/small": "context window 4096, below the policy's min_context_window 8192",
        "p/unknown": "no known window, below the policy's min_context_window 8192",
    }
    exact = "  selection:\n    constraints: {min_context_window: 4096}\n"
    assert sorted(_selector(exact, *entries).ranked(_chat("hi"))) == ["p/big", "p/small"]


def test_the_policys_required_capabilities_join_the_tasks() -> None:
    yaml = "  selection:\n    constraints: {required_capabilities: [vision]}\n"
    entries = (_model("p/plain"), _model("p/eyes", C.CAPABILITY_VISION))
    selector = _selector(yaml, *entries)
    reply = selector.select(_chat("hi"))
    assert reply.model_id == "p/eyes"
    [plain] = [c for c in reply.candidates if c.model_id == "p/plain"]
    assert not plain.eligible and "vision" in plain.rejection_reason.lower()
    # The task's own requirement still counts beside the policy's.
    request = _chat("hi")
    request.task.required_capabilities.append(C.CAPABILITY_TOOLS)
    with pytest.raises(NoSuitableModel):
        selector.ranked(request)
    assert sorted(_selector("", *entries).ranked(_chat("hi"))) == ["p/eyes", "p/plain"]


def test_an_agents_policy_has_its_own_least_window() -> None:
    yaml = (
        "  selection:\n    agents:\n"
        "      long-reader: {policy: {constraints: {min_context_window: 8192}}}\n"
    )
    entries = (_windowed("p/small", 4096), _windowed("p/big", 32768))
    request = _chat("hi")
    request.task.agent_id = "long-reader"
    assert _selector(yaml, *entries).ranked(request) == ["p/big"]
    assert sorted(_selector(yaml, *entries).ranked(_chat("hi"))) == ["p/big", "p/small"]
