"""The coreml engine: off macOS it lists models it cannot serve and says why; on macOS, predicts."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from discovery.coreml_models import feature_extractor, image_classifier
from PIL import Image

from modelyard.backends.coreml.engine import CoreMLEngine
from modelyard.backends.host import BackendHost
from modelyard_client.errors import FailedPrecondition, InvalidRequest, ModelNotFound
from modelyard_client.v1 import common_pb2 as C

LINUX_REASON = "CoreML prediction needs macOS; this host is Linux"
ONLY_MACOS = pytest.mark.skipif(
    sys.platform != "darwin",
    reason="CoreML prediction needs macOS (the Core ML framework); this host is not macOS",
)


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    image_classifier(tmp_path / "pets.mlmodel")
    feature_extractor(tmp_path / "relu.mlpackage")
    return tmp_path


def tensor_input(values: list[float]) -> C.Input:
    data = np.asarray(values, dtype="<f4").tobytes()
    return C.Input(
        tensors=C.Tensors(tensors=[C.Tensor(name="x", shape=[1, 8], dtype="float32", data=data)])
    )


def png(color: tuple[int, int, int], size: int = 16) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, format="PNG")
    return buf.getvalue()


async def collect(engine: CoreMLEngine, model_id: str, model_input: C.Input) -> list[str]:
    return [p.text async for p in engine.infer_stream(model_id, model_input, C.GenerationParams())]


async def test_on_linux_models_are_listed_unavailable_with_the_reason(models_dir: Path) -> None:
    engine = CoreMLEngine(models_dir, system="Linux")
    await engine.start()

    models = {m.id: m for m in engine.models()}
    assert sorted(models) == ["coreml/pets", "coreml/relu"]
    for entry in models.values():
        assert entry.health == C.HEALTH_STATUS_UNAVAILABLE
        assert entry.health_reason == LINUX_REASON
        assert not entry.deployments
    assert engine.health().status == C.HEALTH_STATUS_UNAVAILABLE
    assert engine.health().reason == LINUX_REASON

    with pytest.raises(FailedPrecondition) as err:
        await collect(engine, "coreml/relu", tensor_input([1.0] * 8))
    assert err.value.message == LINUX_REASON
    with pytest.raises(FailedPrecondition):
        await engine.load("coreml/pets")
    with pytest.raises(ModelNotFound):
        await collect(engine, "coreml/nope", tensor_input([1.0] * 8))
    assert engine.loaded_models() == []
    assert await engine.unload("coreml/pets") is False


async def test_a_host_with_the_engine_reports_not_servable(models_dir: Path) -> None:
    host = BackendHost([CoreMLEngine(models_dir, system="Linux")])
    await host.start()
    status, reason = host.health()
    assert status == C.HEALTH_STATUS_UNAVAILABLE
    assert reason == f"coreml: {LINUX_REASON}"
    assert host.engine_for("coreml/pets").kind == "coreml"


@pytest.mark.skipif(sys.platform == "darwin", reason="checks the real non-macOS host")
async def test_this_host_is_detected(models_dir: Path) -> None:
    engine = CoreMLEngine(models_dir)
    await engine.start()
    assert engine.health().status == C.HEALTH_STATUS_UNAVAILABLE
    assert engine.health().reason.startswith("CoreML prediction needs macOS; this host is ")


async def test_missing_directory_leaves_an_engine_that_says_so(tmp_path: Path) -> None:
    engine = CoreMLEngine(tmp_path / "missing", system="Darwin")
    await engine.start()
    assert engine.models() == []
    health = engine.health()
    assert health.status == C.HEALTH_STATUS_UNHEALTHY
    assert "does not exist" in health.reason


async def test_on_macos_terms_an_empty_directory_is_degraded(tmp_path: Path) -> None:
    engine = CoreMLEngine(tmp_path, system="Darwin")
    await engine.start()
    assert engine.health().status == C.HEALTH_STATUS_DEGRADED


@ONLY_MACOS
async def test_feature_extraction_prediction(models_dir: Path) -> None:
    engine = CoreMLEngine(models_dir)
    await engine.start()
    assert engine.health().status == C.HEALTH_STATUS_HEALTHY
    text, last = await collect(engine, "coreml/relu", tensor_input([-1, 2, -3, 4, -5, 6, -7, 8]))
    assert last == ""
    out = json.loads(text)["features"]
    assert out["shape"] == [1, 8]
    assert out["data"] == [0, 2, 0, 4, 0, 6, 0, 8]
    assert engine.loaded_models() == ["coreml/relu"]


@ONLY_MACOS
async def test_image_classification_prediction(models_dir: Path) -> None:
    engine = CoreMLEngine(models_dir)
    await engine.start()
    bright = C.Input(image=C.Image(data=png((255, 255, 255)), mime_type="image/png"))
    text, _ = await collect(engine, "coreml/pets", bright)
    out = json.loads(text)
    assert out["label"] == "cat"  # all weights +1 for cat, -1 for dog
    assert out["scores"]["cat"] > out["scores"]["dog"]


async def test_a_sampling_parameter_is_refused_before_the_model_loads(models_dir: Path) -> None:
    engine = CoreMLEngine(models_dir, system="Darwin")  # served terms, on any host
    await engine.start()
    params = C.GenerationParams(temperature=0.5)
    with pytest.raises(InvalidRequest) as refused:
        await anext(engine.infer_stream("coreml/relu", tensor_input([1.0] * 8), params))
    assert (refused.value.field, refused.value.message) == (
        "params.temperature",
        "params.temperature is not supported by model 'coreml/relu' (CoreML)",
    )
    assert engine.loaded_models() == []  # refused before coremltools read the model
