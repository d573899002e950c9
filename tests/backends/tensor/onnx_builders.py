"""Small real ONNX models, built with `onnx.helper`, whose answers the tests know exactly.

- `write_linear`: ``y = x·W + b`` (x float32 ``[batch, 4]``, W 4x3, b 3).
- `write_classifier`: a 3x8x8 image classifier whose score for each of its labels
  ``red, green, blue`` is the mean of that colour channel (global average pooling,
  then a 3x3 matrix): a red image is ``red``, a blue one ``blue``.
- `write_pair_sum`: two int64 ``[n]`` inputs added, for names, dtypes and a symbolic
  dimension shared by two inputs.
- `write_strings`: a string input, which Input.tensors cannot carry.
"""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from modelyard_client.v1 import common_pb2

W = np.array(
    [[1.0, -2.0, 0.5], [0.0, 1.0, 2.0], [3.0, 0.0, -1.0], [-1.5, 2.5, 1.0]], dtype=np.float32
)
B = np.array([0.25, -1.0, 2.0], dtype=np.float32)
LABELS = ("red", "green", "blue")
# The classifier's 3x3 matrix: a little of the other channels in each score.
MIX = np.array([[1.0, 0.1, 0.1], [0.1, 1.0, 0.1], [0.1, 0.1, 1.0]], dtype=np.float32)
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="modelyard-tests"
    )
    model.ir_version = 8  # what onnxruntime 1.17 and later read
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def write_linear(path: Path) -> Path:
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["y"]),
        ],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(W, "W"), numpy_helper.from_array(B, "b")],
    )
    return _save(graph, path)


def linear(x: np.ndarray) -> np.ndarray:
    """What `write_linear`'s model answers, in numpy."""
    return (x.astype(np.float32) @ W + B).astype(np.float32)


def write_classifier(path: Path, labels: tuple[str, ...] | None = LABELS) -> Path:
    """The model, and ``<stem>.labels.txt`` beside it unless `labels` is None."""
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["means"], axis=1),
            helper.make_node("MatMul", ["means", "mix"], ["scores"]),
        ],
        "colours",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(MIX, "mix")],
    )
    _save(graph, path)
    if labels is not None:
        path.with_name(path.stem + ".labels.txt").write_text("\n".join(labels) + "\n")
    return path


def classifier_scores(rgb: tuple[int, int, int]) -> np.ndarray:
    """What `write_classifier`'s model answers for an image of one colour, ImageNet-
    normalised as the engine does: every pixel the same, so the means are the pixel."""
    pixel = (np.array(rgb, dtype=np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return (pixel[np.newaxis, :] @ MIX).astype(np.float32)


def write_pair_sum(path: Path) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["total"])],
        "pair_sum",
        [
            helper.make_tensor_value_info("a", TensorProto.INT64, ["n"]),
            helper.make_tensor_value_info("b", TensorProto.INT64, ["n"]),
        ],
        [helper.make_tensor_value_info("total", TensorProto.INT64, ["n"])],
    )
    return _save(graph, path)


def write_strings(path: Path) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["words"], ["same"])],
        "strings",
        [helper.make_tensor_value_info("words", TensorProto.STRING, [2])],
        [helper.make_tensor_value_info("same", TensorProto.STRING, [2])],
    )
    return _save(graph, path)


def png(rgb: tuple[int, int, int], size: tuple[int, int] = (20, 12)) -> bytes:
    """An image of one colour, as PNG bytes (not the model's 8x8: the engine resizes)."""
    out = io.BytesIO()
    Image.new("RGB", size, rgb).save(out, format="PNG")
    return out.getvalue()


def jpeg(rgb: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, rgb).save(out, format="JPEG", quality=95)
    return out.getvalue()


def wire_tensor(name: str, array: np.ndarray) -> common_pb2.Tensor:
    """`array` as Input.tensors carries it: little-endian, row-major."""
    little = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    return common_pb2.Tensor(
        name=name, shape=array.shape, dtype=array.dtype.name, data=little.tobytes()
    )


def tensors_input(**arrays: np.ndarray) -> common_pb2.Input:
    model_input = common_pb2.Input()
    model_input.tensors.tensors.extend(wire_tensor(n, a) for n, a in arrays.items())
    return model_input


def array_of(t: common_pb2.Tensor) -> np.ndarray:
    """An output tensor read back as the wire says it is written."""
    return np.frombuffer(t.data, dtype=np.dtype(t.dtype).newbyteorder("<")).reshape(tuple(t.shape))


def write_slow(path: Path, rows: int = 256, size: int = 1024, steps: int = 48) -> Path:
    """``x`` float32 ``[rows, size]`` through `steps` matrix products with the identity:
    the same values back, after long enough (some 300 ms on one core) to be stopped."""
    eye = np.eye(size, dtype=np.float32)
    names = ["x", *(f"h{i}" for i in range(1, steps)), "y"]
    graph = helper.make_graph(
        [helper.make_node("MatMul", [a, "eye"], [b]) for a, b in itertools.pairwise(names)],
        "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, size])],
        [numpy_helper.from_array(eye, "eye")],
    )
    return _save(graph, path)
