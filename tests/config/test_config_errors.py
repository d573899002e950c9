"""Every kind of mistake is refused at load, with its key path, and all of them at once."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from modelyard.config import ConfigError, ConfigFileUnreadable, load_config, parse_config
from modelyard_client.errors import InvalidRequest


def problems(text: str, env: Mapping[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, env=env or {})
    return [str(p) for p in caught.value.problems]


def one_problem(text: str, env: Mapping[str, str] | None = None) -> str:
    found = problems(text, env)
    assert len(found) == 1, found
    return found[0]


def test_config_error_is_an_invalid_request_carrying_every_problem() -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_config("model_system: {hot_swap: {enabled: 3, grace_period_ms: -1}}", env={})
    assert isinstance(caught.value, ConfigError)
    assert len(caught.value.problems) == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "model_system: {selection: {wieghts: {cost: 1}}}",
            "model_system.selection.wieghts: unknown key (did you mean 'weights'?)",
        ),
        (
            "model_system: {registry: {discovery_interval: 30s, cache_tll: 1h}}",
            "model_system.registry.cache_tll: unknown key (did you mean 'cache_ttl'?)",
        ),
        ("modelsystem: {}", "modelsystem: unknown key (did you mean 'model_system'?)"),
        (
            "model_system: {backends: {ollama: {endpont: 'http://x:1'}}}",
            "model_system.backends.ollama.endpont: unknown key (did you mean 'endpoint'?)",
        ),
        (  # a key that belongs to another kind is unknown here
            "model_system: {backends: {ollama: {compute_units: all}}}",
            "model_system.backends.ollama.compute_units: unknown key",
        ),
        (
            "model_system: {backends: {olama: {}}}",
            "model_system.backends.olama: unknown backend 'olama' (did you mean 'ollama'?)",
        ),
    ],
)
def test_unknown_keys(text: str, expected: str) -> None:
    assert one_problem(text).startswith(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "model_system: {backends: {ollama: {models: ['gemma3:4b', '']}}}",
            "model_system.backends.ollama.models[1]: must be a non-empty string",
        ),
        (
            "model_system: {backends: {ollama: {models: ['gemma3:4b', 7]}}}",
            "model_system.backends.ollama.models[1]: must be a non-empty string, not the number 7",
        ),
        (
            "model_system: {backends: {ollama: {models: gemma3}}}",
            "model_system.backends.ollama.models: must be a list, not the string 'gemma3'",
        ),
        (
            "model_system: {backends: {ollama: {timeout_ms: 1.5}}}",
            "model_system.backends.ollama.timeout_ms: must be an integer, not the number 1.5",
        ),
        (
            "model_system: {backends: {ollama: {timeout_ms: '30000'}}}",
            "model_system.backends.ollama.timeout_ms: must be an integer, not the string '30000'",
        ),
        (
            "model_system: {hot_swap: {enabled: 'yes'}}",
            "model_system.hot_swap.enabled: must be true or false, not the string 'yes'",
        ),
        (
            "model_system: {hot_swap: {grace_period_ms: true}}",
            "model_system.hot_swap.grace_period_ms: must be an integer, not the flag true",
        ),
        ("model_system: {selection: []}", "model_system.selection: must be a mapping, not a list"),
        (
            "model_system: {backends: {ollama: {endpoint: 'localhost:11434'}}}",
            "model_system.backends.ollama.endpoint: 'localhost:11434' is not a URL",
        ),
    ],
)
def test_wrong_types(text: str, expected: str) -> None:
    assert one_problem(text).startswith(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "model_system: {selection: {weights: {cost: 1.5}}}",
            "model_system.selection.weights.cost: must be between 0 and 1",
        ),
        (
            "model_system: {monitoring: {alert_thresholds: {error_rate: -0.1}}}",
            "model_system.monitoring.alert_thresholds.error_rate: must be between 0 and 1",
        ),
        (
            "model_system: {hot_swap: {validation_timeout_ms: 0}}",
            "model_system.hot_swap.validation_timeout_ms: must be >= 1",
        ),
        (
            "model_system: {backends: {local: {n_ctx: 16}}}",
            "model_system.backends.local.n_ctx: must be >= 128",
        ),
        (
            "model_system: {registry: {cache_ttl: 0s}}",
            "model_system.registry.cache_ttl: must be > 0",
        ),
        (
            "model_system: {server: {listen: 'localhost'}}",
            "model_system.server.listen: 'localhost' is not host:port",
        ),
    ],
)
def test_out_of_range(text: str, expected: str) -> None:
    assert one_problem(text).startswith(expected)


def test_weights_that_sum_to_zero() -> None:
    text = "model_system: {selection: {weights: {performance: 0, cost: 0}}}"
    assert one_problem(text).startswith("model_system.selection.weights: must not all be 0")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30 parsecs", "'30 parsecs' is not a duration (use e.g. 500ms, 30s, 5m, 1h)"),
        ("30", "'30' is not a duration (use e.g. 500ms, 30s, 5m, 1h)"),
    ],
)
def test_bad_durations(value: str, expected: str) -> None:
    text = f"model_system: {{registry: {{discovery_interval: '{value}'}}}}"
    assert one_problem(text) == f"model_system.registry.discovery_interval: {expected}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "model_system: {backends: {coreml: {compute_units: gpu}}}",
            "model_system.backends.coreml.compute_units: 'gpu' is not one of "
            "all, cpu_only, cpu_and_gpu, cpu_and_ne",
        ),
        (
            "model_system: {selection: {algorithm: round_robbin}}",
            "model_system.selection.algorithm: 'round_robbin' is not one of multi_criteria, "
            "round_robin, least_latency, lowest_cost, random (did you mean 'round_robin'?)",
        ),
        (
            "model_system: {rate_limits: {on_redis_failure: open}}",
            "model_system.rate_limits.on_redis_failure: 'open' is not one of "
            "fail_open, fail_closed (did you mean 'fail_open'?)",
        ),
        (
            "model_system: {backends: {x: {kind: bedrok, region: r}}}",
            "model_system.backends.x.kind: 'bedrok' is not one of",
        ),
        (
            "model_system: {selection: {constraints: {required_capabilities: [vison]}}}",
            "model_system.selection.constraints.required_capabilities[0]: 'vison' is not one of",
        ),
    ],
)
def test_bad_enum_values(text: str, expected: str) -> None:
    assert one_problem(text).startswith(expected)


def test_a_missing_environment_variable_names_the_key_and_the_variable() -> None:
    text = "model_system: {backends: {openai: {api_key: '${OPENAI_API_KEY}'}}}"
    assert one_problem(text) == (
        "model_system.backends.openai.api_key: environment variable OPENAI_API_KEY is not set "
        "(set it, or write ${OPENAI_API_KEY:-} to make it optional)"
    )


def test_a_missing_variable_anywhere_is_an_error_but_a_default_is_not() -> None:
    text = "model_system: {server: {listen: '${LISTEN}'}, backends: {}}"
    assert one_problem(text).startswith(
        "model_system.server.listen: environment variable LISTEN is not set"
    )
    text = "model_system: {server: {listen: '${LISTEN:-0.0.0.0:9}'}, backends: {}}"
    assert parse_config(text, env={}).server.listen == "0.0.0.0:9"


@pytest.mark.parametrize(
    "api_key", ["sk-live-abcdef0123456789", "${OPENAI_API_KEY:-sk-fallback}", "key-${SUFFIX}", 42]
)
def test_a_literal_secret_is_refused_without_being_echoed(api_key: object) -> None:
    text = f"model_system: {{backends: {{openai: {{api_key: {api_key!r}}}}}}}"
    found = one_problem(text, env={"SUFFIX": "x"})
    assert found == (
        "model_system.backends.openai.api_key: put secrets in the environment, "
        "e.g. ${OPENAI_API_KEY}"
    )
    assert str(api_key) not in found


def test_a_hosted_backend_needs_an_api_key() -> None:
    assert one_problem("model_system: {backends: {anthropic: {}}}") == (
        "model_system.backends.anthropic.api_key: is required, e.g. ${ANTHROPIC_API_KEY}"
    )


def test_a_password_in_the_redis_url_is_refused() -> None:
    text = "model_system: {rate_limits: {redis_url: 'redis://:hunter2@redis:6379'}}"
    found = one_problem(text)
    assert found.startswith("model_system.rate_limits.redis_url: put the password in the env")
    assert "hunter2" not in found


def test_references_to_backends_and_models_are_checked() -> None:
    text = """
model_system:
  backends:
    ollama: {models: [gemma3:4b]}
  selection:
    agents:
      a: {model: ollama/gemma3:4x}
      b: {model: olama/gemma3:4b}
      c: {model: gemma3}
      d: {policy: {fallback: [ollama/gemma3:4b, ollama/llama3]}}
      e: {}
  rate_limits: {per_provider: {olama: {requests_per_minute: 1}}}
"""
    assert problems(text) == [
        "model_system.selection.agents.e: set exactly one of 'model' or 'policy'",
    ]
    found = problems(text.replace("      e: {}\n", ""))
    assert found == [  # in file order
        "model_system.selection.agents.a.model: 'gemma3:4x' is not in backends.ollama.models "
        "(did you mean 'gemma3:4b'?)",
        "model_system.selection.agents.b.model: no backend 'olama' (did you mean 'ollama'?)",
        "model_system.selection.agents.c.model: 'gemma3' is not provider/model "
        "(e.g. ollama/gemma3:4b)",
        "model_system.selection.agents.d.policy.fallback[1]: 'llama3' is not in "
        "backends.ollama.models",
        "model_system.rate_limits.per_provider.olama: no backend 'olama' (did you mean 'ollama'?)",
    ]


def test_profiles_and_model_lists_agree() -> None:
    text = """
model_system:
  backends:
    ollama:
      models: [gemma3:4b, gemma3:4b]
      model_profiles: {gemma3:4x: {context_window: 0}, gemma3:4b: {latency_p50_ms: 9, latency_p95_ms: 5}}
"""  # noqa: E501
    assert problems(text) == [
        "model_system.backends.ollama.model_profiles.gemma3:4x.context_window: must be >= 1",
        "model_system.backends.ollama.model_profiles.gemma3:4b.latency_p95_ms: "
        "must be >= latency_p50_ms",
    ]
    fixed = text.replace("context_window: 0", "context_window: 8").replace("p95_ms: 5", "p95_ms: 9")
    assert problems(fixed) == [
        "model_system.backends.ollama.models[1]: 'gemma3:4b' is listed twice",
        "model_system.backends.ollama.model_profiles.gemma3:4x: 'gemma3:4x' is not in models "
        "(did you mean 'gemma3:4b'?)",
    ]


def test_yaml_syntax_errors_give_line_and_column() -> None:
    text = "model_system:\n  registry:\n    cache_ttl: 1h\n   bad: [unclosed\n"
    found = one_problem(text)
    assert found.startswith("YAML syntax error at line 4, column 4:"), found


def test_keys_given_twice_are_refused() -> None:
    text = "model_system:\n  hot_swap: {enabled: true}\n  hot_swap: {enabled: false}\n"
    assert one_problem(text) == "model_system.hot_swap: duplicate key (first given at line 2)"


def test_the_top_level_must_be_a_mapping() -> None:
    assert one_problem("- a\n- b\n").startswith("the file must hold a mapping")


def test_every_problem_is_reported_at_once_in_file_order_with_lines(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "model_system:\n"
        "  registry: {discovery_interval: 30 parsecs}\n"
        "  backends:\n"
        "    ollama: {models: [gemma3:4b, '']}\n"
        "    openai: {api_key: sk-123}\n"
        "  selection:\n"
        "    wieghts: {cost: 1}\n"
        "    weights: {cost: 1.5}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert caught.value.lines() == [
        f"{path}:2: model_system.registry.discovery_interval: '30 parsecs' is not a duration "
        "(use e.g. 500ms, 30s, 5m, 1h)",
        f"{path}:4: model_system.backends.ollama.models[1]: must be a non-empty string",
        f"{path}:5: model_system.backends.openai.api_key: put secrets in the environment, "
        "e.g. ${OPENAI_API_KEY}",
        f"{path}:7: model_system.selection.wieghts: unknown key (did you mean 'weights'?)",
        f"{path}:8: model_system.selection.weights.cost: must be between 0 and 1",
    ]
    assert caught.value.message == "\n".join(caught.value.lines())


def test_a_missing_key_points_at_its_parent_line() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("model_system:\n  backends:\n    vllm: {kind: openai_compat}\n", env={})
    (problem,) = caught.value.problems
    assert (str(problem), problem.line) == ("model_system.backends.vllm.endpoint: is required", 3)


def test_an_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileUnreadable, match="No such file"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigFileUnreadable, match="Is a directory"):
        load_config(tmp_path)
