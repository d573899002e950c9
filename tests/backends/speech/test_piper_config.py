"""`backends.<name>: {kind: piper, ...}`: every key reaches the engine and acts."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.assembly import Settings
from modelyard.assembly.kinds import KINDS, not_served
from modelyard.assembly.plan import engines_for, plan_backends
from modelyard.backends.speech import piper_voices
from modelyard.backends.speech.piper_engine import PiperEngine
from modelyard.config import ConfigError, parse_config
from modelyard.config.backends import PiperBackend
from modelyard.config.unbuilt import not_implemented
from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import common_pb2

FULL = """
model_system:
  hot_swap: {memory_budget_mb: 900, idle_timeout_ms: 60000, preload: [tts/joe]}
  backends:
    tts:
      kind: piper
      models_dir: {models_dir}
      models: [joe]
      cpu_threads: 1
      max_characters: 40
      max_loaded: 2
      max_queue: 7
"""


async def _engine(yaml: str) -> PiperEngine:
    config = parse_config(yaml)
    plans = await plan_backends(Settings(config=config, discover_ollama=False))
    [engine] = engines_for(plans, ("backend-local",))
    assert isinstance(engine, PiperEngine)
    return engine


def _voice_folder(tmp_path: Path) -> str:
    voice = piper_voices.packaged_voice()
    (tmp_path / "joe.onnx").symlink_to(voice.model_path)
    (tmp_path / "joe.onnx.json").symlink_to(voice.config_path)
    return FULL.replace("{models_dir}", str(tmp_path))


async def test_every_key_reaches_the_engine(tmp_path: Path) -> None:
    yaml = _voice_folder(tmp_path)
    config = parse_config(yaml)
    assert isinstance(config.backends["tts"], PiperBackend)
    assert not_served(config) == [] and not_implemented(config) == {}
    engine = await _engine(yaml)
    assert (engine.backend, engine.kind) == ("tts", "piper")
    assert (engine.cpu_threads, engine.max_characters) == (1, 40)
    assert (engine.max_queue, engine._models.max_loaded) == (7, 2)
    assert engine._models.budget_bytes == 900 * 1024 * 1024
    assert (engine._models_dir, engine._wanted, engine._preload) == (
        tmp_path,
        ("joe",),
        ("tts/joe",),
    )
    assert engine._models._idle_timeout_s == 60.0
    assert KINDS["piper"].role == "backend-local"


async def test_preload_cpu_threads_and_max_characters_act(tmp_path: Path) -> None:
    engine = await _engine(_voice_folder(tmp_path))
    await engine.start()  # preloads tts/joe
    try:
        assert engine.loaded_models() == ["tts/joe"]
        async with engine._models.lease("tts/joe") as voice:
            assert voice.session.get_session_options().intra_op_num_threads == 1
        with pytest.raises(InvalidRequest, match="speaks at most 40 in one call"):
            text = common_pb2.Input(text="x" * 41)
            await anext(engine.infer_stream("tts/joe", text, common_pb2.GenerationParams()))
    finally:
        await engine.close()
    assert engine.loaded_models() == []


async def test_defaults_serve_the_packaged_voice() -> None:
    engine = await _engine("model_system: {backends: {piper: {}}}")
    assert (engine.max_queue, engine.max_characters, engine._models.max_loaded) == (512, 2_000, 1)
    assert engine._models_dir is None  # not the server's models_dir: that holds GGUF files
    await engine.start()
    assert [m.id for m in engine.models()] == ["piper/en_US-joe-medium"]
    assert engine.health().status == common_pb2.HEALTH_STATUS_HEALTHY


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("{max_characters: 0}", "max_characters: must be >= 1"),
        ("{cpu_threads: 0}", "cpu_threads: must be >= 1"),
        ("{max_queue: -1}", "max_queue: must be >= 0"),
        ("{speaker: joe}", "speaker"),
    ],
)
def test_bad_values_are_refused_naming_the_key(entry: str, problem: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(f"model_system: {{backends: {{piper: {entry}}}}}")
    assert f"model_system.backends.piper.{problem}" in str(refused.value)
