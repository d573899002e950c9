"""A backend's name starts its models' catalog ids: one the id rule refuses is a config error."""

from __future__ import annotations

import pytest

from modelyard.config import ConfigError, parse_config


def test_a_backend_name_outside_the_id_rule_is_refused_at_load() -> None:
    text = (
        "model_system:\n  backends:\n"
        "    My Ollama: {kind: ollama}\n"
        "    ollama-gpu: {kind: ollama}\n"
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text, env={})
    assert [str(p) for p in caught.value.problems] == [
        "model_system.backends.My Ollama: the backend name 'My Ollama' is not 1-63 characters "
        "of a-z 0-9 . _ -, starting with a letter or digit"
    ]
