"""The tensor engine over small real ONNX models: exact outputs, labels, and every refusal."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path

import numpy as np
import pytest
from backends.tensor.onnx_builders import (
    LABELS,
    MIX,
    array_of,
    classifier_scores,
    jpeg,
    linear,
    png,
    tensors_input,
    write_classifier,
    write_slow,
)

from modelyard.backends.engine import Piece
from modelyard.backends.tensor import image_classifier
from modelyard.backends.tensor.engine import TensorEngine
from modelyard.backends.tensor.image_classifier import ClassifierSettings
from modelyard.backends.tensor.onnx_models import OnnxModelsDir
from modelyard_client.errors import InvalidRequest, ModelNotFound, Overloaded
from modelyard_client.v1 import common_pb2

C = common_pb2
PARAMS = C.GenerationParams(max_tokens=256)  # what the gateway always sends


async def _engine(folder: Path, **dir_options: object) -> TensorEngine:
    engine = TensorEngine(OnnxModelsDir(folder, **dir_options), cpu_threads=1)  # type: ignore[arg-type]
    await engine.start()
    return engine


async def _run(
    engine: TensorEngine,
    model_id: str,
    model_input: C.Input,
    params: C.GenerationParams = PARAMS,
) -> Piece:
    pieces = [p async for p in engine.infer_stream(model_id, model_input, params)]
    assert len(pieces) == 1 and pieces[0].finish_reason == C.FINISH_REASON_STOP
    return pieces[0]


def _image(data: bytes, mime_type: str = "") -> C.Input:
    return C.Input(image=C.Image(data=data, mime_type=mime_type))


async def test_the_catalog_says_what_each_model_takes_and_gives(onnx_dir: Path) -> None:
    engine = await _engine(onnx_dir)
    entries = {e.id: e for e in engine.models()}
    assert sorted(entries) == ["tensor/colours", "tensor/linear", "tensor/pair-sum"]
    lin = entries["tensor/linear"]
    assert list(lin.capabilities) == [C.CAPABILITY_FEATURE_EXTRACTION]
    assert list(lin.input_modalities) == [C.MODALITY_TENSOR]
    assert list(lin.output_modalities) == [C.MODALITY_TENSOR]
    assert json.loads(lin.input_schema_json)["properties"]["x"]["x-shape"] == ["batch", 4]
    assert json.loads(lin.output_schema_json)["required"] == ["y"]
    assert lin.metadata["inputs"] == "'x' float32[batch, 4]"
    assert lin.metadata["producer"] == "modelyard-tests"
    assert lin.resources.memory_bytes == (onnx_dir / "linear.onnx").stat().st_size
    colours = entries["tensor/colours"]
    assert list(colours.capabilities) == [C.CAPABILITY_IMAGE_CLASSIFICATION]
    assert list(colours.input_modalities) == [C.MODALITY_IMAGE, C.MODALITY_TENSOR]
    assert list(colours.output_modalities) == [C.MODALITY_TEXT, C.MODALITY_TENSOR]
    assert colours.metadata["labels"] == str(onnx_dir / "colours.labels.txt")
    assert colours.metadata["image_input"].startswith("3x8x8, mean (0.485, 0.456, 0.406)")
    assert engine.health().status == C.HEALTH_STATUS_HEALTHY
    _, errors = await OnnxModelsDir(onnx_dir).read()
    assert errors == (
        f"onnx:{onnx_dir}: strings.onnx left out: Input.tensors and Output.tensors cannot "
        "carry 'words' tensor(string)[2], 'same' tensor(string)[2]",
    )


async def test_a_linear_model_answers_x_w_plus_b_exactly(onnx_dir: Path) -> None:
    engine = await _engine(onnx_dir)
    x = np.array([[1.0, 2.0, 3.0, 4.0], [-0.5, 0.25, 8.0, 0.0], [0, 0, 0, 0]], np.float32)
    piece = await _run(engine, "tensor/linear", tensors_input(x=x))
    assert piece.text == "" and piece.usage() == C.Usage()
    assert piece.output is not None
    [y] = piece.output.tensors.tensors
    assert (y.name, list(y.shape), y.dtype) == ("y", [3, 3], "float32")
    np.testing.assert_array_equal(array_of(y), linear(x))
    assert engine.loaded_models() == ["tensor/linear"]


async def test_two_int64_inputs_sharing_a_dimension(onnx_dir: Path) -> None:
    engine = await _engine(onnx_dir)
    a, b = np.array([1, -2, 2**40], np.int64), np.array([10, 20, 30], np.int64)
    piece = await _run(engine, "tensor/pair-sum", tensors_input(b=b, a=a))
    assert piece.output is not None
    [total] = piece.output.tensors.tensors
    assert total.dtype == "int64"
    assert array_of(total).tolist() == [11, 18, 2**40 + 30]


@pytest.mark.parametrize(
    ("data", "label", "rgb"),
    [
        (png((255, 0, 0)), "red", (255, 0, 0)),
        (jpeg((0, 0, 255)), "blue", (0, 0, 255)),
        (png((10, 200, 30), size=(8, 8)), "green", (10, 200, 30)),
    ],
)
async def test_an_image_is_classified_by_its_top_score(
    onnx_dir: Path, data: bytes, label: str, rgb: tuple[int, int, int]
) -> None:
    engine = await _engine(onnx_dir)
    piece = await _run(engine, "tensor/colours", _image(data))
    assert piece.text == label
    assert piece.images == 1 and piece.usage().images == 1
    assert piece.output is not None
    [scores] = piece.output.tensors.tensors
    assert (scores.name, list(scores.shape), scores.dtype) == ("scores", [1, 3], "float32")
    if data.startswith(b"\x89PNG"):  # lossless: the pixels are the colour, to float rounding
        np.testing.assert_allclose(array_of(scores), classifier_scores(rgb), rtol=1e-5)


async def test_an_image_in_a_data_url_is_read_too(onnx_dir: Path) -> None:
    engine = await _engine(onnx_dir)
    url = "data:image/png;base64," + base64.b64encode(png((250, 5, 5))).decode()
    piece = await _run(engine, "tensor/colours", C.Input(image=C.Image(url=url)))
    assert piece.text == "red"


async def test_tensors_to_a_classifier_are_scored_and_labelled_too(onnx_dir: Path) -> None:
    engine = await _engine(onnx_dir)
    image = np.zeros((1, 3, 8, 8), np.float32)
    image[0, 1] = 2.0  # green
    piece = await _run(engine, "tensor/colours", tensors_input(image=image))
    assert piece.text == "green" and piece.images == 0
    assert piece.output is not None
    np.testing.assert_array_equal(
        array_of(piece.output.tensors.tensors[0]), np.array([[0, 2, 0]], np.float32) @ MIX
    )


async def test_configured_labels_and_normalisation_act(onnx_dir: Path, tmp_path: Path) -> None:
    labels = tmp_path / "named.txt"
    labels.write_text("rouge\nvert\nbleu\n")
    settings = ClassifierSettings(labels=labels, mean=(0.5,), std=(0.25,))
    engine = await _engine(onnx_dir, classifiers={"colours": settings})
    piece = await _run(engine, "tensor/colours", _image(png((0, 0, 255))))
    assert piece.text == "bleu"
    pixel = (np.array([0, 0, 1], np.float32) - 0.5) / 0.25
    assert piece.output is not None
    np.testing.assert_allclose(
        array_of(piece.output.tensors.tensors[0]), pixel[np.newaxis] @ MIX, rtol=1e-6
    )
    [entry] = [e for e in engine.models() if e.id == "tensor/colours"]
    assert entry.metadata["labels"] == str(labels)


async def test_labels_that_do_not_fit_leave_a_tensor_model(tmp_path: Path) -> None:
    write_classifier(tmp_path / "two.onnx", labels=LABELS[:2])
    models = OnnxModelsDir(tmp_path, classifiers={"missing": ClassifierSettings()})
    found, errors = await models.read()
    assert found["tensor/two"].classifier is None
    assert errors == (
        f"onnx:{tmp_path}: two.onnx is served as a tensor model: its first output 'scores' "
        f"float32[1, 3] has 3 scores for the 2 labels of {tmp_path / 'two.labels.txt'}",
        f"onnx:{tmp_path}: classifiers names 'missing', but there is no missing.onnx",
    )
    engine = await _engine(tmp_path)
    with pytest.raises(InvalidRequest, match="takes tensors \\(MODALITY_TENSOR\\), not image"):
        await _run(engine, "tensor/two", _image(png((255, 0, 0))))


@pytest.mark.parametrize(
    ("model_input", "field", "message"),
    [
        (C.Input(text="hello"), "input", "model 'tensor/linear' takes tensors"),
        (_image(png((1, 2, 3))), "input", "takes tensors (MODALITY_TENSOR), not image"),
        (C.Input(), "input", "not an empty input"),
    ],
)
async def test_input_of_another_kind_is_refused_before_loading(
    onnx_dir: Path, model_input: C.Input, field: str, message: str
) -> None:
    engine = await _engine(onnx_dir)
    with pytest.raises(InvalidRequest) as refused:
        await _run(engine, "tensor/linear", model_input)
    assert refused.value.field == field and message in refused.value.message
    assert engine.loaded_models() == []


@pytest.mark.parametrize(
    ("image", "field", "message"),
    [
        (C.Image(data=b"hello, not an image"), "input.image.data", "is not a PNG/JPEG/WebP/GIF"),
        (
            C.Image(data=png((255, 0, 0))[:40]),
            "input.image",
            "input.image cannot be decoded as a image/png image",
        ),
        (C.Image(data=png((255, 0, 0)), mime_type="image/jpeg"), "input.image.data", "not the"),
        (C.Image(url="https://example.com/cat.png"), "input.image.url", "takes an image's bytes"),
        (C.Image(), "input.image", "input.image has neither data nor url"),
    ],
)
async def test_an_image_that_is_not_one_is_refused_naming_input_image(
    onnx_dir: Path, image: C.Image, field: str, message: str
) -> None:
    engine = await _engine(onnx_dir)
    with pytest.raises(InvalidRequest) as refused:
        await _run(engine, "tensor/colours", C.Input(image=image))
    assert refused.value.field == field
    assert message in refused.value.message
    assert engine.loaded_models() == []


async def test_an_image_of_too_many_pixels_is_refused_before_decoding(
    onnx_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(image_classifier, "MAX_IMAGE_PIXELS", 20 * 12 - 1)
    engine = await _engine(onnx_dir)
    with pytest.raises(InvalidRequest, match=r"input\.image is 20x12 pixels; the tensor engine"):
        await _run(engine, "tensor/colours", _image(png((255, 0, 0), size=(20, 12))))


async def test_a_bad_tensor_is_refused_before_loading(onnx_dir: Path) -> None:
    engine = await _engine(onnx_dir)
    with pytest.raises(InvalidRequest) as refused:
        await _run(engine, "tensor/linear", tensors_input(x=np.zeros((2, 4), np.int32)))
    assert refused.value.field == "input.tensors[0].dtype"
    assert engine.loaded_models() == []


async def test_sampling_parameters_are_refused_or_dropped_when_allowed(onnx_dir: Path) -> None:
    engine = await _engine(onnx_dir)
    x = tensors_input(x=np.ones((1, 4), np.float32))
    params = C.GenerationParams(max_tokens=16, temperature=0.0, seed=7)
    with pytest.raises(InvalidRequest) as refused:
        await _run(engine, "tensor/linear", x, params)
    assert refused.value.field == "params.temperature"
    assert "params.temperature is not supported by model 'tensor/linear'" in refused.value.message
    params.drop_unsupported_params = True
    piece = await _run(engine, "tensor/linear", x, params)
    assert piece.dropped_params == ("temperature", "seed")


async def test_load_unload_and_cold_start(onnx_dir: Path) -> None:
    engine = await _engine(onnx_dir)
    reported: list[tuple[str, float]] = []
    engine.report_cold_starts(lambda m, ms: reported.append((m, ms)))
    took = await engine.load("tensor/linear")
    assert took > 0 and engine.loaded_models() == ["tensor/linear"]
    assert [m for m, _ in reported] == ["tensor/linear"]
    [entry] = [e for e in engine.models() if e.id == "tensor/linear"]
    assert entry.performance.cold_start_ms == reported[0][1]
    assert await engine.unload("tensor/linear") is True
    assert await engine.unload("tensor/linear") is False
    assert engine.loaded_models() == []
    piece = await _run(engine, "tensor/linear", tensors_input(x=np.ones((1, 4), np.float32)))
    assert piece.output is not None  # loaded again on use
    with pytest.raises(ModelNotFound):
        await engine.load("tensor/strings")
    with pytest.raises(ModelNotFound):
        await _run(engine, "tensor/nothing", tensors_input(x=np.ones((1, 4), np.float32)))
    await engine.close()
    assert engine.loaded_models() == []


async def test_max_loaded_evicts_the_least_recently_used(onnx_dir: Path) -> None:
    engine = TensorEngine(OnnxModelsDir(onnx_dir), cpu_threads=1, max_loaded=1)
    await engine.start()
    await engine.load("tensor/linear")
    await engine.load("tensor/pair-sum")
    assert engine.loaded_models() == ["tensor/pair-sum"]


async def test_models_narrow_what_is_served(onnx_dir: Path) -> None:
    engine = await _engine(onnx_dir, models=("linear", "absent"))
    assert [e.id for e in engine.models()] == ["tensor/linear"]
    _, errors = await OnnxModelsDir(onnx_dir, models=("linear", "absent")).read()
    assert errors == (f"onnx:{onnx_dir}: models names 'absent', but there is no absent.onnx",)


async def test_health_says_what_is_missing(tmp_path: Path) -> None:
    missing = await _engine(tmp_path / "nowhere")
    assert missing.health().status == C.HEALTH_STATUS_UNHEALTHY
    assert "does not exist or is not a directory" in missing.health().reason
    assert missing.models() == []
    empty = await _engine(tmp_path)
    assert empty.health().status == C.HEALTH_STATUS_DEGRADED
    assert empty.health().reason == f"no ONNX models in {tmp_path}"


async def test_a_corrupt_file_is_left_out_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "broken.onnx").write_bytes(b"\x08\x07garbage")
    found, errors = await OnnxModelsDir(tmp_path).read()
    assert found == {}
    [error] = errors
    assert error.startswith(f"onnx:{tmp_path}: broken.onnx is not a readable ONNX model (")


async def test_a_caller_that_goes_away_stops_the_run(tmp_path: Path) -> None:
    write_slow(tmp_path / "slow.onnx")
    engine = TensorEngine(OnnxModelsDir(tmp_path), cpu_threads=1, max_queue=0)
    await engine.start()
    await engine.load("tensor/slow")
    x = tensors_input(x=np.ones((256, 1024), np.float32))
    started = time.perf_counter()
    whole = await _run(engine, "tensor/slow", x)
    full_s = time.perf_counter() - started
    assert whole.output is not None
    np.testing.assert_array_equal(array_of(whole.output.tensors.tensors[0]), np.ones((256, 1024)))
    running = asyncio.create_task(_run(engine, "tensor/slow", x))
    await asyncio.sleep(full_s / 10)
    with pytest.raises(Overloaded):  # max_queue 0: one runs, none waits
        await _run(engine, "tensor/slow", x)
    started = time.perf_counter()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    stopped_s = time.perf_counter() - started
    assert stopped_s < full_s / 2, (stopped_s, full_s)  # stopped, not waited out
    assert engine._models.leases("tensor/slow") == 0  # idle again: free to unload
    assert await engine.unload("tensor/slow") is True
