"""A configured `anthropic` backend becomes an engine with the endpoint its keys describe."""

from __future__ import annotations

import pytest

from modelyard.assembly import Settings
from modelyard.assembly.plan import engines_for, plan_backends
from modelyard.backends.anthropic.engine import AnthropicEngine
from modelyard.config import parse_config


async def _engine(entry: str) -> AnthropicEngine:
    config = parse_config(
        f"model_system:\n  backends:\n    claude: {entry}\n", env={"CLAUDE_KEY": "sk-ant-x"}
    )
    plans = await plan_backends(Settings(config=config, discover_ollama=False))
    [engine] = engines_for(plans, ("backend-openai-compat",))
    assert isinstance(engine, AnthropicEngine)
    return engine


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("", "https://api.anthropic.com/v1"),
        (", base_url: 'http://proxy:8080'", "http://proxy:8080/v1"),
        (", base_url: 'http://proxy:8080/v1/'", "http://proxy:8080/v1"),
    ],
)
async def test_the_base_url_is_the_public_api_unless_given_with_or_without_v1(
    base_url: str, expected: str
) -> None:
    engine = await _engine(f"{{kind: anthropic, api_key: '${{CLAUDE_KEY}}'{base_url}}}")
    assert engine.endpoint.base_url == expected


async def test_the_entrys_keys_reach_the_engine() -> None:
    engine = await _engine(
        "{kind: anthropic, api_key: '${CLAUDE_KEY}', models: [claude-haiku-4-5],"
        " timeout_ms: 30000, max_concurrency: 8, max_queue: 2}"
    )
    endpoint = engine.endpoint
    assert (endpoint.name, endpoint.models, endpoint.timeout_s) == (
        "claude",
        ("claude-haiku-4-5",),
        30.0,
    )
    assert (endpoint.max_concurrency, endpoint.max_queue) == (8, 2)
    assert endpoint.key() == "sk-ant-x"
    assert engine.kind == "anthropic"
