"""A model's tensor inputs and outputs, a request's tensors checked against them, and the
outputs as the wire carries them.

A `TensorSpec` is what onnxruntime says of one input or output: its name, its
element type and its shape, each dimension a fixed size, a symbolic name
(``batch``: any size, the same wherever the name appears) or unknown (any
size). `input_feeds` checks a request's `Input.tensors` against a model's
inputs before anything runs — every input given once, under its name, with
its dtype, rank, fixed sizes and a data length of prod(shape) x itemsize —
each refusal an `InvalidRequest` naming the field (``input.tensors[1].shape``)
and what the model wants. `output_tensors` writes the outputs little-endian,
row-major, as `Tensor.data` says.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from modelyard_client.errors import FailedPrecondition, InvalidRequest
from modelyard_client.v1 import common_pb2

# onnxruntime's element types that `Tensor.data` carries, by the dtype names the wire uses
# (numpy's). Others (string, bfloat16, the float8 kinds) cannot be sent or answered here.
_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int8)": "int8",
    "tensor(int16)": "int16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(uint8)": "uint8",
    "tensor(uint16)": "uint16",
    "tensor(uint32)": "uint32",
    "tensor(uint64)": "uint64",
    "tensor(bool)": "bool",
}
DTYPES: tuple[str, ...] = tuple(_ORT_TYPES.values())
# The most an answer's tensors may hold together: well under the 64 MiB gRPC messages
# between the services (`modelyard.server.runtime.MAX_MESSAGE_BYTES`).
MAX_OUTPUT_BYTES = 16 * 1024 * 1024

Dim = int | str | None  # a fixed size, a symbolic name, or unknown
Array = npt.NDArray[Any]


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a model. `dtype` is a name of `DTYPES`, or onnxruntime's
    own type (``tensor(string)``, ``seq(...)``) for one the wire cannot carry."""

    name: str
    dtype: str
    shape: tuple[Dim, ...]

    @property
    def carried(self) -> bool:
        return self.dtype in DTYPES

    def describe(self) -> str:
        """``'x' float32[batch, 4]`` (``?`` for a size the model leaves unknown)."""
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"'{self.name}' {self.dtype}[{dims}]"

    def schema(self) -> dict[str, Any]:
        """The JSON Schema property of the catalog entry's input or output schema."""
        return {"type": "array", "x-dtype": self.dtype, "x-shape": list(self.shape)}


def spec_of(node: Any) -> TensorSpec:
    """The spec of an onnxruntime ``NodeArg`` (`InferenceSession.get_inputs()`)."""
    dims: list[Dim] = []
    for d in node.shape or ():
        if isinstance(d, int) and d >= 0:
            dims.append(d)
        else:  # a name, None, or -1 as some exporters write "any"
            dims.append(d if isinstance(d, str) and d else None)
    return TensorSpec(str(node.name), _ORT_TYPES.get(str(node.type), str(node.type)), tuple(dims))


def schema_of(specs: Sequence[TensorSpec]) -> dict[str, Any]:
    """JSON Schema of a model's inputs (or outputs): one property per tensor, all required."""
    return {
        "type": "object",
        "properties": {s.name: s.schema() for s in specs},
        "required": [s.name for s in specs],
    }


def input_feeds(
    tensors: Sequence[common_pb2.Tensor], specs: Sequence[TensorSpec], model_id: str
) -> dict[str, Array]:
    """The arrays to run `model_id` on, by input name; `InvalidRequest` naming the first
    field that does not fit the model's inputs (`specs`)."""
    by_name = {s.name: s for s in specs}
    wants = ", ".join(s.describe() for s in specs)
    feeds: dict[str, Array] = {}
    named: dict[str, tuple[int, str]] = {}  # symbolic dimension -> (size, where it was set)
    for i, tensor in enumerate(tensors):
        where = f"input.tensors[{i}]"
        spec = by_name.get(tensor.name)
        if spec is None:
            raise InvalidRequest(
                f"{where}.name {tensor.name!r}: model '{model_id}' has no input of that name "
                f"(its inputs: {wants})",
                field=f"{where}.name",
            )
        if spec.name in feeds:
            raise InvalidRequest(
                f"{where}.name {tensor.name!r}: that input is given twice", field=f"{where}.name"
            )
        feeds[spec.name] = _array(tensor, spec, where, model_id, named)
    missing = [s.describe() for s in specs if s.name not in feeds]
    if missing:
        raise InvalidRequest(
            f"input.tensors lacks model '{model_id}' input(s) {', '.join(missing)}",
            field="input.tensors",
        )
    return feeds


def _array(
    tensor: common_pb2.Tensor,
    spec: TensorSpec,
    where: str,
    model_id: str,
    named: dict[str, tuple[int, str]],
) -> Array:
    wanted = f"model '{model_id}' input {spec.describe()}"
    if not spec.carried:
        raise InvalidRequest(
            f"{where}: {wanted} is of a type Input.tensors cannot carry", field=where
        )
    if tensor.dtype != spec.dtype:
        known = "" if tensor.dtype in DTYPES else f" (the dtypes taken here: {', '.join(DTYPES)})"
        raise InvalidRequest(
            f"{where}.dtype is {tensor.dtype!r}; {wanted} takes {spec.dtype}{known}",
            field=f"{where}.dtype",
        )
    shape = tuple(tensor.shape)
    if len(shape) != len(spec.shape):
        raise InvalidRequest(
            f"{where}.shape {list(shape)} has {len(shape)} dimension(s); {wanted} has "
            f"{len(spec.shape)}",
            field=f"{where}.shape",
        )
    for j, (size, dim) in enumerate(zip(shape, spec.shape, strict=True)):
        at = f"{where}.shape[{j}]"
        if size < 0:
            raise InvalidRequest(f"{at} is {size}: sizes are >= 0", field=f"{where}.shape")
        if isinstance(dim, int) and size != dim:
            raise InvalidRequest(
                f"{where}.shape {list(shape)}: dimension {j} is {size}; {wanted} fixes it at {dim}",
                field=f"{where}.shape",
            )
        if isinstance(dim, str):
            seen = named.setdefault(dim, (size, at))
            if seen[0] != size:
                raise InvalidRequest(
                    f"{at} is {size}, but dimension '{dim}' of model '{model_id}' is "
                    f"{seen[0]} in {seen[1]}: the two must agree",
                    field=f"{where}.shape",
                )
    dtype = np.dtype(spec.dtype)
    expected = math.prod(shape) * dtype.itemsize
    if len(tensor.data) != expected:
        raise InvalidRequest(
            f"{where}.data is {len(tensor.data)} bytes; shape {list(shape)} of {spec.dtype} "
            f"takes {expected} (prod(shape) x {dtype.itemsize})",
            field=f"{where}.data",
        )
    if dtype == np.bool_ and any(b > 1 for b in tensor.data):
        raise InvalidRequest(
            f"{where}.data: a bool tensor's bytes are 0 or 1", field=f"{where}.data"
        )
    array = np.frombuffer(tensor.data, dtype=dtype.newbyteorder("<")).reshape(shape)
    return array.astype(dtype, copy=False)  # native order: a no-op on little-endian hosts


def output_tensors(values: Mapping[str, Any], model_id: str) -> common_pb2.Tensors:
    """A run's outputs as the wire carries them (each little-endian, row-major); an
    answer over `MAX_OUTPUT_BYTES` is refused."""
    arrays = {name: np.asarray(value) for name, value in values.items()}
    total = sum(a.nbytes for a in arrays.values())
    if total > MAX_OUTPUT_BYTES:
        raise InvalidRequest(
            f"model '{model_id}' answers this input with {total} bytes of tensors; the tensor "
            f"engine answers at most {MAX_OUTPUT_BYTES} (send a smaller input)",
            field="input",
        )
    out = common_pb2.Tensors()
    for name, array in arrays.items():
        dtype = array.dtype.name  # "float32" whatever its byte order
        if dtype not in DTYPES:
            # Models with such outputs are not served (`onnx_models`): a model that lied.
            raise FailedPrecondition(
                f"model '{model_id}' output '{name}' is {dtype}, which Output.tensors cannot carry"
            )
        little = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        out.tensors.add(name=name, shape=array.shape, dtype=dtype, data=little.tobytes())
    return out
