"""A request's `Input` as CoreML features, and a prediction's outputs as JSON text.

Both work from the JSON Schema discovery wrote for the model
(`input_schema_json`), so they run, and are tested, on any OS; only the
prediction between them needs macOS.
"""

from __future__ import annotations

import base64
import io
import json
import wave
from typing import Any

import numpy as np
from google.protobuf.json_format import MessageToDict

from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import common_pb2

_DTYPES: dict[str, Any] = {
    "float32": np.float32,
    "float16": np.float16,
    "double": np.float64,
    "int32": np.int32,
}
_COLOR_MODES = {"RGB": "RGB", "BGR": "RGB", "GRAYSCALE": "L", "GRAYSCALE_FLOAT16": "L"}


def model_features(model_input: common_pb2.Input, schema: dict[str, Any]) -> dict[str, Any]:
    """The features to predict on; raises `InvalidRequest` naming what does not fit."""
    props: dict[str, dict[str, Any]] = schema.get("properties", {})
    kind = model_input.WhichOneof("kind")
    if kind == "tensors":
        features = {t.name: _tensor(t, props) for t in model_input.tensors.tensors}
    elif kind == "structured":
        values = MessageToDict(model_input.structured)
        features = {name: _structured(name, value, props) for name, value in values.items()}
    elif kind == "text":
        features = {_only(props, "string", "text"): model_input.text}
    elif kind == "image":
        name = _only(props, "image", "an image")
        features = {name: _image(model_input.image, props[name])}
    elif kind == "audio":
        name = _only(props, "multiArray", "audio samples")
        features = {name: _audio(model_input.audio, props[name])}
    else:
        raise InvalidRequest(
            "CoreML models take tensors, structured, text, image or audio input, "
            f"not {kind or 'nothing'}"
        )
    missing = [n for n in schema.get("required", []) if n not in features]
    if missing:
        raise InvalidRequest(f"missing input feature(s): {', '.join(missing)}")
    return features


def _coreml_type(prop: dict[str, Any]) -> str:
    return str(prop.get("x-coreml-type") or prop.get("type") or "")


def _only(props: dict[str, dict[str, Any]], coreml_type: str, what: str) -> str:
    """The one input feature of this type (text goes to the one string input...)."""
    names = [n for n, p in props.items() if _coreml_type(p) == coreml_type]
    if len(names) != 1:
        raise InvalidRequest(
            f"this model has {len(names)} input(s) that take {what}; "
            f"send tensors or structured input naming the features ({', '.join(props)})"
        )
    return names[0]


def _prop(name: str, props: dict[str, dict[str, Any]]) -> dict[str, Any]:
    try:
        return props[name]
    except KeyError:
        raise InvalidRequest(
            f"the model has no input feature '{name}' (inputs: {', '.join(props)})"
        ) from None


def _tensor(t: common_pb2.Tensor, props: dict[str, dict[str, Any]]) -> Any:
    prop = _prop(t.name, props)
    try:
        dtype = np.dtype(t.dtype or "float32").newbyteorder("<")
        array = np.frombuffer(t.data, dtype=dtype).reshape(tuple(t.shape))
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"tensor '{t.name}': {exc}") from exc
    return _as_declared(array, prop)


def _structured(name: str, value: Any, props: dict[str, dict[str, Any]]) -> Any:
    prop = _prop(name, props)
    kind = _coreml_type(prop)
    if kind == "multiArray":
        try:
            return _as_declared(np.asarray(value, dtype=np.float64), prop)
        except ValueError as exc:
            raise InvalidRequest(f"feature '{name}': {exc}") from exc
    if kind == "integer":
        return int(value)
    if kind == "number":
        return float(value)
    if kind == "image":
        return _image(common_pb2.Image(data=base64.b64decode(str(value))), prop)
    return value


def _as_declared(array: Any, prop: dict[str, Any]) -> Any:
    """The array in the feature's declared dtype, and shape when it is fixed."""
    dtype = _DTYPES.get(str(prop.get("x-dtype")))
    if dtype is not None:
        array = array.astype(dtype)
    shape = prop.get("x-shape") or []
    flexible = "x-shapes" in prop or "x-shape-range" in prop
    if shape and not flexible and tuple(array.shape) != tuple(shape):
        if array.size != int(np.prod(shape)):
            raise InvalidRequest(f"expected shape {shape}, got {list(array.shape)}")
        array = array.reshape(shape)
    return array


def _image(image: common_pb2.Image, prop: dict[str, Any]) -> Any:
    from PIL import Image, UnidentifiedImageError

    if image.WhichOneof("source") != "data":
        raise InvalidRequest("CoreML image input must carry the image bytes, not a URL")
    try:
        with Image.open(io.BytesIO(image.data)) as opened:
            img = opened.convert(_COLOR_MODES.get(str(prop.get("x-color-space")), "RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise InvalidRequest(f"the image cannot be decoded: {exc}") from exc
    width, height = int(prop.get("x-width") or 0), int(prop.get("x-height") or 0)
    if width and height and img.size != (width, height):
        img = img.resize((width, height))
    return img


def _audio(audio: common_pb2.Audio, prop: dict[str, Any]) -> Any:
    """16-bit PCM WAV as float samples in [-1, 1], shaped to the declared input."""
    try:
        with wave.open(io.BytesIO(audio.data)) as wav:
            if wav.getsampwidth() != 2:
                raise InvalidRequest("CoreML audio input must be 16-bit PCM WAV")
            frames = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise InvalidRequest(f"the audio is not a readable WAV file: {exc}") from exc
    samples = np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0
    shape = prop.get("x-shape") or []
    if shape and "x-shape-range" not in prop and "x-shapes" not in prop:
        want = int(np.prod(shape))
        samples = np.pad(samples[:want], (0, max(0, want - samples.size)))
    return _as_declared(samples, prop)


def outputs_json(outputs: dict[str, Any]) -> str:
    """A prediction's outputs as one JSON object (arrays with their shape and dtype)."""
    return json.dumps({name: _jsonable(value) for name, value in outputs.items()}, sort_keys=True)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return {
            "shape": list(value.shape),
            "dtype": str(value.dtype),
            "data": value.ravel().tolist(),
        }
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "save") and hasattr(value, "size"):  # a PIL image output
        buf = io.BytesIO()
        value.save(buf, format="PNG")
        return {"image/png": base64.b64encode(buf.getvalue()).decode()}
    return value
