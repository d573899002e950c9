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


def test_only_the_canary_key_still_says_it_does_nothing_yet() -> None:
    config = parse_config(
        "model_system: {hot_swap: {enabled: false, grace_period_ms: 100, "
        "validation_timeout_ms: 200, rollback_on_failure: false}}",
        env={},
    )
    assert notices(config) == [
        "accepted, not implemented yet: hot_swap.rollback_on_failure (canary swaps are not built)"
    ]
