"""Valid configuration files load into the right typed, frozen values."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from modelyard.config import (
    CoreMLBackend,
    HostedBackend,
    LocalBackend,
    OllamaBackend,
    OpenAICompatBackend,
    default_config,
    load_config,
    parse_config,
    parse_duration,
)

EXAMPLE = """\
model_system:
  registry: {discovery_interval: "30s", health_check_interval: "10s", cache_ttl: "1h"}
  backends:
    ollama: {endpoint: "http://localhost:11434", models: ["gemma3:4b", "llama3:8b"], timeout_ms: 30000}
    coreml: {compute_units: "all", cache_dir: "/tmp/coreml_cache", models: ["FastViTT8F16.mlpackage"]}
    openai: {api_key: "${OPENAI_API_KEY}", models: ["gpt-4-turbo", "gpt-3.5-turbo"]}
  selection:
    algorithm: "multi_criteria"
    weights: {performance: 0.4, cost: 0.3, reliability: 0.2, capabilities: 0.1}
    constraints: {max_latency_ms: 5000, max_cost_per_request: 0.01}
  hot_swap: {enabled: true, grace_period_ms: 30000, validation_timeout_ms: 5000}
  monitoring: {metrics_interval: "5s", health_check_interval: "30s", alert_thresholds: {error_rate: 0.05, latency_p95_ms: 2000}}
"""  # noqa: E501 - the example exactly as the issue gives it


def test_the_example_loads_with_typed_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-123")
    path = tmp_path / "modelyard.yaml"
    path.write_text(EXAMPLE)

    config = load_config(path)

    assert config.registry.discovery_interval == 30.0
    assert config.registry.health_check_interval == 10.0
    assert config.registry.cache_ttl == 3600.0
    assert list(config.backends) == ["ollama", "coreml", "openai"]
    ollama = config.backends["ollama"]
    assert isinstance(ollama, OllamaBackend)
    assert ollama.endpoint == "http://localhost:11434"
    assert ollama.models == ("gemma3:4b", "llama3:8b")
    assert ollama.timeout_ms == 30000
    coreml = config.backends["coreml"]
    assert isinstance(coreml, CoreMLBackend)
    assert coreml.compute_units == "all"
    assert coreml.cache_dir == Path("/tmp/coreml_cache")
    openai = config.backends["openai"]
    assert isinstance(openai, HostedBackend)
    assert openai.kind == "openai"
    assert openai.api_key == "sk-test-123"
    assert "sk-test-123" not in repr(config)  # secrets stay out of logs
    assert config.selection.algorithm == "multi_criteria"
    weights = config.selection.weights
    assert (weights.performance, weights.cost, weights.reliability, weights.capabilities) == (
        0.4,
        0.3,
        0.2,
        0.1,
    )
    assert config.selection.constraints.max_latency_ms == 5000
    assert config.selection.constraints.max_cost_per_request == 0.01
    assert config.hot_swap.enabled is True
    assert config.hot_swap.grace_period_ms == 30000
    assert config.hot_swap.validation_timeout_ms == 5000
    assert config.monitoring.metrics_interval == 5.0
    assert config.monitoring.alert_thresholds.error_rate == 0.05
    assert config.monitoring.alert_thresholds.latency_p95_ms == 2000
    assert config.model_ids() == [
        "ollama/gemma3:4b",
        "ollama/llama3:8b",
        "coreml/FastViTT8F16.mlpackage",
        "openai/gpt-4-turbo",
        "openai/gpt-3.5-turbo",
    ]


def test_the_config_is_frozen() -> None:
    config = default_config({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.server.listen = "0.0.0.0:1"  # type: ignore[misc]  # the write under test
    with pytest.raises(TypeError):
        config.backends["x"] = config.backends["local"]  # type: ignore[index]  # the write under test


def test_the_default_needs_no_file_and_follows_the_environment() -> None:
    bare = default_config({})
    assert set(bare.active_backends()) == {"local", "ollama"}
    assert isinstance(bare.backends["local"], LocalBackend)
    assert bare.backends["openai"].disabled_reason == "api_key is empty"
    assert bare.server.listen == "127.0.0.1:50051"
    assert bare.selection.weights.performance == 0.4

    keyed = default_config({"MISTRAL_API_KEY": "m", "CUSTOM_AI_PROVIDER_URL": "http://h:8000"})
    assert set(keyed.active_backends()) == {"local", "ollama", "mistral", "custom"}
    custom = keyed.backends["custom"]
    assert isinstance(custom, OpenAICompatBackend)
    assert custom.endpoint == "http://h:8000"


def test_an_empty_file_is_the_default() -> None:
    assert parse_config("", env={}) == default_config({})
    assert parse_config("model_system:\n", env={}) == default_config({})


def test_a_file_without_backends_gets_the_default_ones_and_an_explicit_list_replaces_them() -> None:
    assert set(parse_config("model_system: {hot_swap: {enabled: false}}", env={}).backends) == set(
        default_config({}).backends
    )
    assert dict(parse_config("model_system: {backends: {}}", env={}).backends) == {}


def test_the_full_schema() -> None:
    text = """
version: 1
model_system:
  server: {listen: "0.0.0.0:7000", data_dir: /srv/my, grace_period: 1m30s, log_level: DEBUG}
  backends:
    local: {models_dir: /models, n_ctx: 8192, max_loaded: 2, n_gpu_layers: -1}
    ollama-gpu: {kind: ollama, endpoint: "http://gpu:11434", keep_alive: 10m}
    vllm:
      kind: openai_compat
      endpoint: "http://vllm:8000/v1"
      api_key: "${VLLM_KEY:-}"
      models: [qwen]
      model_profiles:
        qwen: {context_window: 32768, tokens_per_minute: 100000, requests_per_minute: 60,
               usd_per_1m_input_tokens: 0.2, capabilities: [chat, tools]}
    vertex: {project: my-proj, region: us-central1, models: [gemini-1.5-pro]}
    bedrock: {region: eu-west-1}
    anthropic: {api_key: "${ANTHROPIC_API_KEY}", timeout_ms: "${ANTHROPIC_TIMEOUT_MS:-60000}"}
  selection:
    weights: {cost: 1}
    agents:
      coder: {model: vllm/qwen}
      cheap: {policy: {algorithm: lowest_cost, fallback: [anthropic/claude-3-haiku]}}
  rate_limits:
    per_key: {requests_per_minute: 600}
    per_provider: {anthropic: {tokens_per_minute: 40000}}
    redis_url: "redis://:${REDIS_PASSWORD}@redis:6379/0"
    on_redis_failure: fail_closed
"""
    env = {"ANTHROPIC_API_KEY": "a", "REDIS_PASSWORD": "pw"}
    config = parse_config(text, env=env)
    assert config.server.grace_period == 90.0
    assert config.server.data_dir == Path("/srv/my")
    local = config.backends["local"]
    assert isinstance(local, LocalBackend)
    assert (local.n_ctx, local.max_loaded, local.models_dir) == (8192, 2, Path("/models"))
    gpu = config.backends["ollama-gpu"]
    assert isinstance(gpu, OllamaBackend)
    assert gpu.keep_alive == 600.0
    vllm = config.backends["vllm"]
    assert vllm.model_profiles["qwen"].capabilities == ("chat", "tools")
    assert vllm.model_profiles["qwen"].tokens_per_minute == 100000.0
    assert vllm.disabled_reason is None  # an empty key is fine for openai_compat
    anthropic = config.backends["anthropic"]
    assert isinstance(anthropic, HostedBackend)
    assert anthropic.timeout_ms == 60000
    assert config.selection.weights.cost == 1.0
    assert config.selection.weights.performance == 0.0  # given weights: the rest are 0
    assert config.selection.agents["coder"].model == "vllm/qwen"
    cheap = config.selection.agents["cheap"].policy
    assert cheap is not None
    assert cheap.algorithm == "lowest_cost"
    assert config.rate_limits.redis_url == "redis://:pw@redis:6379/0"
    assert config.rate_limits.on_redis_failure == "fail_closed"
    assert config.rate_limits.per_provider["anthropic"].tokens_per_minute == 40000.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1m30s", 90.0),
        ("1.5s", 1.5),
        ("90d", 90 * 86_400.0),  # retention, key expiry
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["30", "30 parsecs", "", "s", "1w", "-1s"])
def test_not_durations(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def test_dollar_dollar_is_a_literal_dollar() -> None:
    config = parse_config("model_system: {server: {data_dir: /srv/$$x}, backends: {}}", env={})
    assert config.server.data_dir == Path("/srv/$x")
