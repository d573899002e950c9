"""Keys that are accepted but do nothing yet are named, never silently ignored."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.assembly.kinds import KINDS, BackendKind
from modelyard.cli import main
from modelyard.config import parse_config
from modelyard.config.unbuilt import not_implemented, notices

UNBUILT = """
model_system:
  registry: {discovery_interval: 10s, cache_ttl: 1h}
  hot_swap: {enabled: true, grace_period_ms: 100, rollback_on_failure: true}
  monitoring: {metrics_interval: 5s, alert_thresholds: {}}
  selection:
    algorithm: round_robin
    fallback: [local/a]
    constraints: {max_latency_ms: 500, min_context_window: 4096}
  backends:
    local:
      n_gpu_layers: -1
      models: [a]
      model_profiles: {a: {context_window: 2048, max_output_tokens: 256}}
    ollama: {keep_alive: 10m}  # acts: the native engine sends it
    openai: {api_key: "${OPENAI_API_KEY}", max_retries: 3}
"""


def test_every_unbuilt_key_the_file_gives_is_named_at_the_depth_given() -> None:
    config = parse_config(UNBUILT, env={"OPENAI_API_KEY": "sk"})
    assert list(not_implemented(config)) == [
        "backends.local.model_profiles.a.max_output_tokens",
        "backends.local.models",
        "registry.cache_ttl",
        "selection.algorithm",
    ]


def test_keys_that_act_are_not_named() -> None:
    config = parse_config(
        "model_system:\n  selection: {algorithm: multi_criteria}\n"
        "  monitoring: {metrics_interval: 2s, alert_thresholds: {cost_per_hour_usd: 5},\n"
        "               alert_webhook: {url: 'https://hooks.example.com/x'}}\n"
        "  backends:\n    openai: {api_key: '${K}', models: [gpt-4o-mini]}\n",
        env={"K": "sk"},
    )
    # multi_criteria runs; the live figures go to the registry and the alerts' rules; an
    # OpenAI model list restricts
    assert notices(config) == []


def test_config_check_prints_each_notice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model_system:\n  registry: {cache_ttl: 1h}\n")
    assert main(["config", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert (
        "  accepted, not implemented yet: registry.cache_ttl "
        "(the registry keeps no cache; responses: gateway.cache.ttl)\n"
    ) in out


def test_config_check_names_a_backend_no_engine_serves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant")
    # A kind whose table entry has no engine (every built-in kind has one by now).
    monkeypatch.setitem(KINDS, "anthropic", BackendKind("backend-openai-compat"))
    path = tmp_path / "c.yaml"
    path.write_text(
        "model_system:\n  backends:\n    anthropic: {api_key: '${ANTHROPIC_API_KEY}'}\n"
    )
    assert main(["config", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert (
        "  accepted, not implemented yet: backends.anthropic (no engine for kind anthropic yet)\n"
        in out
    )
