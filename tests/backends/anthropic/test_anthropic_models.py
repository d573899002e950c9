"""Which models the anthropic engine serves: configured ones, or what GET /v1/models lists."""

from __future__ import annotations

import pytest
from backends.anthropic.anthropic_calls import endpoint_of
from support.fake_anthropic import FakeAnthropic

from modelyard.backends.anthropic import upstream
from modelyard.backends.anthropic.engine import AnthropicEngine
from modelyard_client.errors import ModelNotFound
from modelyard_client.v1 import common_pb2


async def test_configured_models_are_served_without_asking_the_api(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    assert [m.id for m in engine.models()] == [
        "claude/claude-haiku-4-5",
        "claude/claude-sonnet-4-5",
    ]
    assert fake.listed == []
    entry = engine.models()[0]
    assert (entry.name, entry.provider) == ("claude-haiku-4-5", "claude")
    assert list(entry.capabilities) == [
        common_pb2.CAPABILITY_CHAT,
        common_pb2.CAPABILITY_STREAMING,
        common_pb2.CAPABILITY_TOOLS,
    ]
    assert engine.health().status == common_pb2.HEALTH_STATUS_HEALTHY


async def test_without_models_every_listed_model_is_served_page_by_page(
    fake: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.models = [f"claude-model-{i}" for i in range(5)]
    monkeypatch.setattr(upstream, "MODELS_PAGE", 2)
    served = AnthropicEngine(endpoint_of(fake, models=()))
    await served.start()
    await served.close()
    assert sorted(m.name for m in served.models()) == sorted(fake.models)
    assert fake.listed == [
        {"limit": "2"},
        {"limit": "2", "after_id": "claude-model-1"},
        {"limit": "2", "after_id": "claude-model-3"},
    ]
    assert {m.context_window for m in served.models()} == {200_000}  # max_input_tokens


async def test_a_refused_list_at_start_leaves_the_engine_unhealthy(fake: FakeAnthropic) -> None:
    served = AnthropicEngine(endpoint_of(fake, models=(), api_key="sk-ant-wrong"))
    await served.start()
    await served.close()
    assert served.models() == []
    health = served.health()
    assert health.status == common_pb2.HEALTH_STATUS_UNHEALTHY
    assert "rejected this gateway's API key" in health.reason


async def test_a_model_found_later_is_served_by_its_prefix(engine: AnthropicEngine) -> None:
    assert engine.serves("claude/claude-opus-4-5")
    assert not engine.serves("openai/gpt-5")


async def test_load_checks_the_api_still_offers_the_model(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    assert await engine.load("claude/claude-sonnet-4-5") >= 0
    fake.models = ["claude-haiku-4-5"]
    with pytest.raises(ModelNotFound):
        await engine.load("claude/claude-sonnet-4-5")
    assert not await engine.unload("claude/claude-haiku-4-5")  # nothing held here
