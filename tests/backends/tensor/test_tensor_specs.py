"""A request's tensors against a model's inputs: each mismatch refused, naming its field."""

from __future__ import annotations

import numpy as np
import pytest
from backends.tensor.onnx_builders import array_of, wire_tensor

from modelyard.backends.tensor import tensor_specs
from modelyard.backends.tensor.tensor_specs import (
    TensorSpec,
    input_feeds,
    output_tensors,
    spec_of,
)
from modelyard_client.errors import FailedPrecondition, InvalidRequest
from modelyard_client.v1 import common_pb2

X = TensorSpec("x", "float32", ("batch", 4))
PAIR = (TensorSpec("a", "int64", ("n",)), TensorSpec("b", "int64", ("n",)))
MODEL = "t/m"


def _refusal(tensors: list[common_pb2.Tensor], specs: tuple[TensorSpec, ...]) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as refused:
        input_feeds(tensors, specs, MODEL)
    return refused.value


def test_a_matching_tensor_becomes_its_array() -> None:
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    feeds = input_feeds([wire_tensor("x", x)], (X,), MODEL)
    assert list(feeds) == ["x"]
    assert feeds["x"].dtype == np.float32 and feeds["x"].shape == (2, 4)
    np.testing.assert_array_equal(feeds["x"], x)


def test_the_bytes_are_read_little_endian_whatever_the_sender() -> None:
    x = np.array([[1.5, -2.0, 3.25, 1e-3]], dtype=">f4")  # big-endian in memory
    sent = wire_tensor("x", x)
    assert sent.data == np.array([[1.5, -2.0, 3.25, 1e-3]], dtype="<f4").tobytes()
    np.testing.assert_array_equal(input_feeds([sent], (X,), MODEL)["x"], x)


def test_a_wrong_dtype_names_the_field_and_what_the_model_takes() -> None:
    sent = wire_tensor("x", np.zeros((1, 4), dtype=np.float64))
    err = _refusal([sent], (X,))
    assert err.field == "input.tensors[0].dtype"
    assert "input.tensors[0].dtype is 'float64'" in err.message
    assert "'x' float32[batch, 4] takes float32" in err.message


def test_an_unknown_dtype_lists_the_dtypes_taken() -> None:
    sent = common_pb2.Tensor(name="x", shape=[1, 4], dtype="complex64", data=b"\0" * 32)
    err = _refusal([sent], (X,))
    assert err.field == "input.tensors[0].dtype"
    assert "the dtypes taken here: float32, float64, float16, int8" in err.message


@pytest.mark.parametrize(
    ("shape", "wanted"),
    [
        ([4], "has 1 dimension(s); model 't/m' input 'x' float32[batch, 4] has 2"),
        ([2, 5], "dimension 1 is 5; model 't/m' input 'x' float32[batch, 4] fixes it at 4"),
        ([-1, 4], "input.tensors[0].shape[0] is -1: sizes are >= 0"),
    ],
)
def test_a_wrong_shape_names_the_field(shape: list[int], wanted: str) -> None:
    sent = common_pb2.Tensor(name="x", shape=shape, dtype="float32", data=b"")
    err = _refusal([sent], (X,))
    assert err.field == "input.tensors[0].shape"
    assert wanted in err.message


def test_data_of_the_wrong_length_is_refused() -> None:
    sent = wire_tensor("x", np.zeros((3, 4), dtype=np.float32))
    sent.data = sent.data[:-4]
    err = _refusal([sent], (X,))
    assert err.field == "input.tensors[0].data"
    assert "input.tensors[0].data is 44 bytes; shape [3, 4] of float32 takes 48" in err.message


def test_an_unknown_input_name_lists_the_model_inputs() -> None:
    sent = wire_tensor("c", np.zeros(2, dtype=np.int64))
    err = _refusal([wire_tensor("a", np.zeros(2, dtype=np.int64)), sent], PAIR)
    assert err.field == "input.tensors[1].name"
    assert "'c': model 't/m' has no input of that name" in err.message
    assert "(its inputs: 'a' int64[n], 'b' int64[n])" in err.message


def test_a_missing_input_and_a_repeated_one_are_refused() -> None:
    a = wire_tensor("a", np.zeros(2, dtype=np.int64))
    missing = _refusal([a], PAIR)
    assert missing.field == "input.tensors"
    assert "lacks model 't/m' input(s) 'b' int64[n]" in missing.message
    twice = _refusal([a, a], PAIR)
    assert twice.field == "input.tensors[1].name"
    assert "given twice" in twice.message


def test_a_symbolic_dimension_must_agree_across_inputs() -> None:
    a = wire_tensor("a", np.zeros(2, dtype=np.int64))
    b = wire_tensor("b", np.zeros(3, dtype=np.int64))
    err = _refusal([a, b], PAIR)
    assert err.field == "input.tensors[1].shape"
    assert "input.tensors[1].shape[0] is 3, but dimension 'n'" in err.message
    assert "is 2 in input.tensors[0].shape[0]" in err.message


def test_bool_bytes_are_zero_or_one() -> None:
    spec = (TensorSpec("mask", "bool", (2,)),)
    ok = input_feeds([wire_tensor("mask", np.array([True, False]))], spec, MODEL)
    assert ok["mask"].tolist() == [True, False]
    bad = common_pb2.Tensor(name="mask", shape=[2], dtype="bool", data=b"\x01\x02")
    assert _refusal([bad], spec).field == "input.tensors[0].data"


def test_an_input_of_a_type_the_wire_cannot_carry_is_refused() -> None:
    spec = (TensorSpec("words", "tensor(string)", (2,)),)
    sent = common_pb2.Tensor(name="words", shape=[2], dtype="float32", data=b"\0" * 8)
    err = _refusal([sent], spec)
    assert err.field == "input.tensors[0]"
    assert "is of a type Input.tensors cannot carry" in err.message


def test_outputs_are_written_little_endian_row_major() -> None:
    y = np.arange(6, dtype=np.int32).reshape(2, 3).T  # not C-contiguous
    written = output_tensors({"y": y, "flag": np.array(True)}, MODEL)
    first, flag = written.tensors
    assert (first.name, list(first.shape), first.dtype) == ("y", [3, 2], "int32")
    assert first.data == np.ascontiguousarray(y).astype("<i4").tobytes()
    np.testing.assert_array_equal(array_of(first), y)
    assert (flag.dtype, list(flag.shape), flag.data) == ("bool", [], b"\x01")


def test_outputs_over_the_bound_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tensor_specs, "MAX_OUTPUT_BYTES", 15)
    with pytest.raises(InvalidRequest, match="16 bytes of tensors; the tensor engine answers"):
        output_tensors({"y": np.zeros(4, dtype=np.float32)}, MODEL)
    with pytest.raises(FailedPrecondition, match="output 's' is str32"):
        output_tensors({"s": np.array(["a"])}, MODEL)


class _NodeArg:
    def __init__(self, name: str, type_: str, shape: list[object] | None) -> None:
        self.name, self.type, self.shape = name, type_, shape


def test_onnxruntime_shapes_become_specs() -> None:
    spec = spec_of(_NodeArg("x", "tensor(float16)", ["batch", 3, None, -1, 7]))
    assert spec == TensorSpec("x", "float16", ("batch", 3, None, None, 7))
    assert spec.describe() == "'x' float16[batch, 3, ?, ?, 7]"
    assert spec_of(_NodeArg("s", "tensor(string)", None)).carried is False
