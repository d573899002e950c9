"""Request inputs as CoreML features and outputs as JSON: no prediction, so any OS."""

from __future__ import annotations

import base64
import io
import json
import wave
from typing import Any

import numpy as np
import pytest
from google.protobuf.struct_pb2 import Struct
from PIL import Image

from modelyard.backends.coreml.features import model_features, outputs_json
from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import common_pb2 as C

ARRAY = {"type": "array", "x-coreml-type": "multiArray", "x-dtype": "float32", "x-shape": [1, 8]}
IMAGE = {
    "type": "string",
    "x-coreml-type": "image",
    "x-color-space": "RGB",
    "x-width": 4,
    "x-height": 4,
}
TENSOR_SCHEMA: dict[str, Any] = {"type": "object", "properties": {"x": ARRAY}, "required": ["x"]}


def png(size: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (10, 20, 30)).save(buf, format="PNG")
    return buf.getvalue()


def float_tensor(name: str, shape: list[int], nbytes: int) -> C.Input:
    t = C.Tensor(name=name, shape=shape, dtype="float32", data=b"\0" * nbytes)
    return C.Input(tensors=C.Tensors(tensors=[t]))


def test_tensor_input_becomes_an_array_of_the_declared_dtype_and_shape() -> None:
    data = np.arange(8, dtype="<f8").tobytes()
    model_input = C.Input(
        tensors=C.Tensors(tensors=[C.Tensor(name="x", shape=[8], dtype="float64", data=data)])
    )
    x = model_features(model_input, TENSOR_SCHEMA)["x"]
    assert x.dtype == np.float32 and x.shape == (1, 8)
    assert x.ravel().tolist() == list(range(8))


def test_structured_input_fills_named_features() -> None:
    schema = {
        "properties": {"x": ARRAY, "age": {"type": "integer"}, "name": {"type": "string"}},
        "required": ["x", "age"],
    }
    s = Struct()
    s.update({"x": [0.5] * 8, "age": 41, "name": "ada"})
    features = model_features(C.Input(structured=s), schema)
    assert features["x"].shape == (1, 8)
    assert features["age"] == 41 and isinstance(features["age"], int)
    assert features["name"] == "ada"


def test_text_goes_to_the_one_string_input() -> None:
    schema = {"properties": {"text": {"type": "string"}}, "required": ["text"]}
    assert model_features(C.Input(text="hello"), schema) == {"text": "hello"}


def test_image_is_decoded_and_resized_to_the_declared_size() -> None:
    schema = {"properties": {"image": IMAGE}, "required": ["image"]}
    img = model_features(C.Input(image=C.Image(data=png(16))), schema)["image"]
    assert img.size == (4, 4) and img.mode == "RGB"
    via_struct = Struct()
    via_struct.update({"image": base64.b64encode(png(8)).decode()})
    assert model_features(C.Input(structured=via_struct), schema)["image"].size == (4, 4)


def test_wav_audio_becomes_samples_of_the_declared_length() -> None:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.array([16384, -16384, 0], dtype="<i2").tobytes())
    schema = {"properties": {"audio": {**ARRAY, "x-shape": [5]}}, "required": ["audio"]}
    samples = model_features(C.Input(audio=C.Audio(data=buf.getvalue())), schema)["audio"]
    assert samples.tolist() == [0.5, -0.5, 0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    ("model_input", "message"),
    [
        (float_tensor("y", [8], 32), "no input feature 'y'"),
        (float_tensor("x", [3], 12), "expected shape [1, 8]"),
        (float_tensor("x", [8], 5), "tensor 'x'"),
        (C.Input(tensors=C.Tensors()), "missing input feature(s): x"),
        (C.Input(text="hi"), "0 input(s) that take text"),
        (C.Input(image=C.Image(url="https://x.invalid/a.png")), "0 input(s) that take an image"),
        (C.Input(), "not nothing"),
    ],
)  # fmt: skip
def test_inputs_that_do_not_fit_are_invalid_requests(model_input: C.Input, message: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        model_features(model_input, TENSOR_SCHEMA)
    assert message in err.value.message


def test_image_url_and_undecodable_bytes_are_rejected() -> None:
    schema = {"properties": {"image": IMAGE}, "required": ["image"]}
    with pytest.raises(InvalidRequest, match="not a URL"):
        model_features(C.Input(image=C.Image(url="https://example.invalid/x.png")), schema)
    with pytest.raises(InvalidRequest, match="cannot be decoded"):
        model_features(C.Input(image=C.Image(data=b"not an image")), schema)


def test_outputs_become_one_json_object() -> None:
    text = outputs_json(
        {
            "features": np.array([[0.0, 2.5]], dtype=np.float32),
            "label": "cat",
            "scores": {"cat": np.float64(0.75), "dog": 0.25},
            "thumbnail": Image.new("RGB", (1, 1)),
        }
    )
    out = json.loads(text)
    assert out["features"] == {"shape": [1, 2], "dtype": "float32", "data": [0.0, 2.5]}
    assert out["label"] == "cat"
    assert out["scores"] == {"cat": 0.75, "dog": 0.25}
    assert base64.b64decode(out["thumbnail"]["image/png"]).startswith(b"\x89PNG")
