"""`backends.<name>: {kind: tensor, ...}`: every key reaches the engine and its discovery."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.assembly import Settings
from modelyard.assembly.kinds import KINDS, not_served
from modelyard.assembly.plan import discovery_for, engines_for, plan_backends
from modelyard.backends.tensor.engine import TensorEngine
from modelyard.backends.tensor.image_classifier import ClassifierSettings
from modelyard.config import ConfigError, parse_config
from modelyard.config.backends import TensorBackend
from modelyard.config.unbuilt import not_implemented
from modelyard.discovery.onnx_files import OnnxDirectorySource

FULL = """
model_system:
  hot_swap: {memory_budget_mb: 300, idle_timeout_ms: 30000, preload: [onnx/linear]}
  backends:
    onnx:
      kind: tensor
      models_dir: {models_dir}
      models: [linear, colours]
      classifiers:
        colours: {labels: {labels}, mean: [0.5], std: [0.25, 0.5, 1.0]}
      cpu_threads: 1
      max_loaded: 3
      max_queue: 9
"""


def _full(onnx_dir: Path) -> str:
    labels = onnx_dir / "colours.labels.txt"
    return FULL.replace("{models_dir}", str(onnx_dir)).replace("{labels}", str(labels))


async def _plans(yaml: str, **settings: object) -> tuple[Settings, list[object]]:
    config = parse_config(yaml)
    built = Settings(config=config, discover_ollama=False, **settings)  # type: ignore[arg-type]
    return built, await plan_backends(built)  # type: ignore[return-value]


async def test_every_key_reaches_the_engine(onnx_dir: Path) -> None:
    config = parse_config(_full(onnx_dir))
    backend = config.backends["onnx"]
    assert isinstance(backend, TensorBackend)
    assert not_served(config) == [] and not_implemented(config) == {}
    assert KINDS["tensor"].role == "backend-local"
    _, plans = await _plans(_full(onnx_dir))
    [engine] = engines_for(plans, ("backend-local",))  # type: ignore[arg-type]
    assert isinstance(engine, TensorEngine)
    assert (engine.backend, engine.kind, engine.cpu_threads) == ("onnx", "tensor", 1)
    assert (engine.files.path, engine.files.models) == (onnx_dir, ("linear", "colours"))
    assert engine.files.classifiers == {
        "colours": ClassifierSettings(onnx_dir / "colours.labels.txt", (0.5,), (0.25, 0.5, 1.0))
    }
    assert (engine.max_queue, engine._models.max_loaded) == (9, 3)
    assert engine._models.budget_bytes == 300 * 1024 * 1024
    assert engine._models._idle_timeout_s == 30.0
    await engine.start()  # preloads onnx/linear
    try:
        assert engine.loaded_models() == ["onnx/linear"]
        assert [e.id for e in engine.models()] == ["onnx/colours", "onnx/linear"]
    finally:
        await engine.close()


async def test_discovery_reads_the_directory_as_the_engine_does(onnx_dir: Path) -> None:
    _, plans = await _plans(_full(onnx_dir))
    [engine] = engines_for(plans, ("backend-local",))  # type: ignore[arg-type]
    [binding] = discovery_for(plans, [engine], "127.0.0.1:1")  # type: ignore[arg-type]
    assert isinstance(binding.source, OnnxDirectorySource)
    assert binding.source.name == f"onnx:{onnx_dir}"
    snapshot = await binding.source.discover()
    await engine.start()
    try:
        served = engine.models()
        assert served[1].performance.cold_start_ms > 0  # preloaded: the one difference
        served[1].ClearField("performance")
        assert list(snapshot.entries) == served
        assert snapshot.errors == ()  # strings.onnx is not in `models`
    finally:
        await engine.close()


async def test_the_models_dir_defaults_to_the_servers(tmp_path: Path) -> None:
    settings, plans = await _plans("model_system: {backends: {tensor: {}}}", models_dir=tmp_path)
    [engine] = engines_for(plans, ("backend-local",))  # type: ignore[arg-type]
    assert isinstance(engine, TensorEngine)
    assert engine.files.path == tmp_path == settings.models_dir_for(None)
    assert engine.files.classifiers == {} and engine.max_queue == 512


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("{classifiers: {c: {mean: [0.1, 0.2]}}}", "classifiers.c.mean: has 2 values: give 1"),
        ("{classifiers: {c: {std: [0]}}}", "classifiers.c.std[0]: must be > 0"),
        ("{models: [a], classifiers: {c: {}}}", "classifiers.c: 'c' is not in models"),
        ("{cpu_threads: 0}", "cpu_threads: must be >= 1"),
        ("{max_loaded: 0}", "max_loaded: must be >= 1"),
        ("{labels: x.txt}", "labels: unknown key"),
    ],
)
def test_bad_values_are_refused_naming_the_key(entry: str, problem: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(f"model_system: {{backends: {{tensor: {entry}}}}}")
    assert f"model_system.backends.tensor.{problem}" in str(refused.value)
