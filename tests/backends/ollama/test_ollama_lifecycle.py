"""Load and unload by keep_alive, what /api/ps says is loaded, and the catalog entries."""

from __future__ import annotations

import pytest
from backends.ollama.calls import MODEL, collect
from backends.ollama.conftest import EngineFor
from support.fake_ollama import FakeOllama

from modelyard.backends.ollama import engine as engine_module
from modelyard.backends.ollama.engine import OllamaEngine
from modelyard_client.errors import ModelNotFound
from modelyard_client.v1 import common_pb2 as C


async def test_load_sends_a_chat_without_messages_with_the_keep_alive(
    daemon: FakeOllama, engine_for: EngineFor
) -> None:
    engine = await engine_for(keep_alive_s=900.0)
    assert engine.loaded_models() == []
    took = await engine.load(MODEL)
    assert took > 0
    [body] = daemon.chats()
    assert (body["model"], body["messages"], body["keep_alive"]) == ("gemma3:270m", [], 900.0)
    assert daemon.loaded == ["gemma3:270m"]
    assert engine.loaded_models() == [MODEL]  # as /api/ps lists it


async def test_unload_sends_keep_alive_zero_and_says_whether_the_model_was_loaded(
    daemon: FakeOllama, engine: OllamaEngine
) -> None:
    await engine.load(MODEL)
    assert await engine.unload(MODEL) is True
    unload = daemon.chats()[-1]
    assert (unload["model"], unload["messages"], unload["keep_alive"]) == ("gemma3:270m", [], 0)
    assert daemon.loaded == []
    assert engine.loaded_models() == []
    assert await engine.unload(MODEL) is False  # not loaded any more


async def test_loading_a_model_not_pulled_is_model_not_found(engine: OllamaEngine) -> None:
    with pytest.raises(ModelNotFound) as caught:
        await engine.load("ollama/missing:7b")
    assert caught.value.model_id == "ollama/missing:7b"


async def test_a_generation_leaves_its_model_loaded(engine: OllamaEngine) -> None:
    await collect(engine)
    assert engine.loaded_models() == [MODEL]


async def test_what_is_loaded_follows_the_daemon_once_the_copy_is_stale(
    daemon: FakeOllama, engine: OllamaEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    await engine.load(MODEL)
    daemon.loaded.clear()  # its keep_alive ran out: the daemon unloaded it
    assert engine.loaded_models() == [MODEL]  # the copy is fresh: not asked again yet
    monkeypatch.setattr(engine_module, "LOADED_MAX_AGE_S", 0.0)
    engine.loaded_models()  # stale: asks /api/ps in the background
    assert engine._refresh is not None
    await engine._refresh
    assert engine.loaded_models() == []


async def test_models_are_the_pulled_ones_described_as_discovery_describes_them(
    daemon: FakeOllama, engine: OllamaEngine
) -> None:
    by_id = {m.id: m for m in engine.models()}
    assert sorted(by_id) == [
        "ollama/gemma3:270m",
        "ollama/llava:7b",
        "ollama/nomic-embed-text:latest",
        "ollama/qwen3:8b",
    ]
    gemma = by_id[MODEL]
    assert (gemma.name, gemma.provider, gemma.version) == ("gemma3:270m", "ollama", "e7d36fb2c3b3")
    assert gemma.context_window == 32768  # /api/show model_info["gemma3.context_length"]
    assert list(gemma.capabilities) == [
        C.CAPABILITY_TEXT_GENERATION,
        C.CAPABILITY_CHAT,
        C.CAPABILITY_STREAMING,
        C.CAPABILITY_JSON_OUTPUT,
    ]
    assert C.MODALITY_IMAGE in by_id["ollama/llava:7b"].input_modalities
    assert by_id["ollama/qwen3:8b"].context_window == 40960
    assert gemma.metadata["loaded"] == "false"
    await engine.load(MODEL)
    assert {m.id: m for m in engine.models()}[MODEL].metadata["loaded"] == "true"


async def test_without_discover_only_the_configured_models_are_served_pulled_or_not(
    engine_for: EngineFor,
) -> None:
    engine = await engine_for(models=["llava:7b", "not-pulled:1b"], discover=False)
    by_id = {m.id: m for m in engine.models()}
    assert sorted(by_id) == ["ollama/llava:7b", "ollama/not-pulled:1b"]
    assert by_id["ollama/llava:7b"].context_window == 32768
    assert by_id["ollama/not-pulled:1b"].context_window == 0  # nothing to describe it
    with pytest.raises(ModelNotFound):
        await collect(engine, model_id="ollama/not-pulled:1b")


async def test_a_daemon_that_stops_answering_while_described_leaves_the_engine_unhealthy(
    daemon: FakeOllama, engine_for: EngineFor
) -> None:
    daemon.answer_shows = 1
    engine = await engine_for(models=["llava:7b"])
    health = engine.health()
    assert health.status == C.HEALTH_STATUS_UNHEALTHY
    assert health.reason.startswith("ollama 'ollama' at http://127.0.0.1:")
    assert "is unreachable" in health.reason
    assert [m.id for m in engine.models()] == ["ollama/llava:7b"]  # the configured ones


async def test_a_failing_api_ps_leaves_the_load_state_unknown_not_the_engine_down(
    daemon: FakeOllama, engine_for: EngineFor
) -> None:
    daemon.ps_status = 500
    engine = await engine_for()
    assert engine.health().status == C.HEALTH_STATUS_HEALTHY
    assert len(engine.models()) == 4
    assert engine.loaded_models() == []
