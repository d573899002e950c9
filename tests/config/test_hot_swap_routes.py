"""`hot_swap.routes` and `hot_swap.task_routes`: what the file may say, and each mistake named."""

from __future__ import annotations

import pytest

from modelyard.config import ConfigError, parse_config
from modelyard.config.unbuilt import notices


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, env={})
    return [str(p) for p in caught.value.problems]


def test_routes_and_task_routes_are_read() -> None:
    config = parse_config(
        "model_system:\n"
        "  hot_swap:\n"
        "    routes: {chat-default: local/gemma-3-270m-q4_k_m}\n"
        "    task_routes: {code: local/coder, summarization: local/gemma-3-270m-q4_k_m}\n",
        env={},
    )
    assert dict(config.hot_swap.routes) == {"chat-default": "local/gemma-3-270m-q4_k_m"}
    assert dict(config.hot_swap.task_routes) == {
        "code": "local/coder",
        "summarization": "local/gemma-3-270m-q4_k_m",
    }
    assert notices(config) == []  # routes act: no "not implemented yet" for them


def test_each_route_mistake_is_named_at_its_key() -> None:
    found = _problems(
        "model_system:\n"
        "  hot_swap:\n"
        "    routes: {Chat: local/a, fast: nowhere/x, slow: no-slash}\n"
        "    task_routes: {coding: local/a}\n"
    )
    assert found == [
        "model_system.hot_swap.routes.Chat: the alias 'Chat' is not 1-63 characters of "
        "a-z 0-9 . _ -, starting with a letter or digit",
        "model_system.hot_swap.routes.fast: no backend 'nowhere'",
        "model_system.hot_swap.routes.slow: 'no-slash' is not provider/model "
        "(e.g. ollama/gemma3:4b)",
        "model_system.hot_swap.task_routes.coding: 'coding' is not a task type (did you mean "
        "'code'?); task types: chat, completion, code, summarization, embedding, "
        "classification, vision, speech_to_text, text_to_speech",
    ]


def test_the_swap_canary_and_ab_test_keys_act() -> None:
    config = parse_config(
        "model_system: {hot_swap: {enabled: false, grace_period_ms: 100, "
        "validation_timeout_ms: 200, rollback_on_failure: false, "
        "canary: {steps: [10, 100], step_requests: 20, step_ms: 0, "
        "max_error_rate_increase: 0.1, max_latency_p95_increase: 1, "
        "min_latency_increase_ms: 5}, ab_tests: {alpha: 0.01, min_samples_per_arm: 50}}}",
        env={},
    )
    assert notices(config) == []


@pytest.mark.parametrize(
    ("steps", "shown"),
    [
        ("[5, 50]", "5, 50"),
        ("[50, 25, 100]", "50, 25, 100"),
        ("[]", ""),
        ("[5, 5, 100]", "5, 5, 100"),
    ],
)
def test_canary_steps_must_rise_to_100(steps: str, shown: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(f"model_system: {{hot_swap: {{canary: {{steps: {steps}}}}}}}", env={})
    assert (
        f"model_system.hot_swap.canary.steps: must rise step by step and end at 100, not {shown}"
    ) in str(caught.value)
