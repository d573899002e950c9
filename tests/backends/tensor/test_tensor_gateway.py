"""End to end: tensors and images through a real gateway stack to the tensor engine.

The stack is configured with a `tensor` backend over a directory of small ONNX
models; requests name a model or leave the choice to selection, which must route
tensors and an image-classification task here by itself, and text elsewhere.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest
from backends.tensor.onnx_builders import (
    array_of,
    classifier_scores,
    linear,
    png,
    tensors_input,
    write_linear,
)
from conftest import StackFactory
from support.scripted_engine import ScriptedEngine

from modelyard.assembly import Stack
from modelyard.config import parse_config
from modelyard_client.errors import InvalidRequest, RequestTooLarge, error_from_rpc
from modelyard_client.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc, selector_pb2

C = common_pb2
ROLES = ("registry", "selector", "gateway", "backend-local")
X = np.array([[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 0.0, 2.0]], np.float32)


async def _stack(make_stack: StackFactory, folder: Path, text_model: ScriptedEngine) -> Stack:
    config = parse_config(
        f"model_system: {{backends: {{onnx: {{kind: tensor, models_dir: {folder}}}}}}}"
    )
    return await make_stack([text_model], config=config, roles=ROLES)


def _request(model_input: C.Input, model: str = "") -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=model, no_cache=True)
    request.input.CopyFrom(model_input)
    return request


async def _refusal(
    gateway: gateway_pb2_grpc.GatewayServiceAsyncStub, request: gateway_pb2.GenerateRequest
) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await gateway.Generate(request, timeout=30)
    return refused.value


async def test_tensors_stream_and_answer_whole_with_exact_numbers(
    make_stack: StackFactory, onnx_dir: Path
) -> None:
    stack = await _stack(make_stack, onnx_dir, ScriptedEngine())
    request = _request(tensors_input(x=X), "onnx/linear")
    async with grpc.aio.insecure_channel(stack.address) as channel:
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        chunks = [c async for c in gateway.GenerateStream(request, timeout=30)]
        response = await gateway.Generate(request, timeout=30)
    assert chunks[0].model_id == "onnx/linear"
    last = chunks[-1]
    assert last.finish_reason == C.FINISH_REASON_STOP
    [y] = [t for c in chunks for t in c.output.tensors.tensors]
    assert (y.name, list(y.shape), y.dtype) == ("y", [2, 3], "float32")
    np.testing.assert_array_equal(array_of(y), linear(X))
    assert response.model_id == "onnx/linear" and response.text == ""
    assert response.finish_reason == C.FINISH_REASON_STOP
    [whole] = response.output.tensors.tensors
    assert whole == y
    assert (response.usage.input_tokens, response.usage.output_tokens) == (0, 0)


async def test_an_image_is_classified_with_its_label_and_scores(
    make_stack: StackFactory, onnx_dir: Path
) -> None:
    stack = await _stack(make_stack, onnx_dir, ScriptedEngine())
    red = _request(C.Input(image=C.Image(data=png((255, 0, 0)), mime_type="image/png")))
    red.model = "onnx/colours"
    blue = _request(C.Input(image=C.Image(data=png((0, 0, 255)))), "onnx/colours")
    async with grpc.aio.insecure_channel(stack.address) as channel:
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        red_answer = await gateway.Generate(red, timeout=30)
        blue_chunks = [c async for c in gateway.GenerateStream(blue, timeout=30)]
    assert red_answer.text == "red"
    assert red_answer.usage.images == 1
    [scores] = red_answer.output.tensors.tensors
    np.testing.assert_allclose(array_of(scores), classifier_scores((255, 0, 0)), rtol=1e-5)
    assert "".join(c.text for c in blue_chunks) == "blue"
    assert blue_chunks[-1].usage.images == 1


async def test_selection_routes_tensors_and_image_classification_here(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    write_linear(tmp_path / "linear.onnx")
    text_model = ScriptedEngine()  # a text model beside them: selection must tell them apart
    stack = await _stack(make_stack, tmp_path, text_model)
    classify = _request(C.Input(image=C.Image(data=png((0, 0, 255)))))
    classify.task.type = selector_pb2.TASK_TYPE_CLASSIFICATION
    bare = _request(C.Input(image=C.Image(data=png((0, 0, 255)))))  # classification too
    describe = _request(C.Input(image=C.Image(data=png((0, 0, 255)))))
    describe.task.type = selector_pb2.TASK_TYPE_VISION  # named: a vision model's task
    async with grpc.aio.insecure_channel(stack.address) as channel:
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        tensors = await gateway.Generate(_request(tensors_input(x=X)), timeout=30)
        not_yet = await _refusal(gateway, classify)  # no classifier in the catalog yet
        bare_not_yet = await _refusal(gateway, bare)
        text = await gateway.Generate(_request(C.Input(text="hello")), timeout=30)
        vision = await _refusal(gateway, describe)
    assert tensors.model_id == "onnx/linear"
    np.testing.assert_array_equal(array_of(tensors.output.tensors.tensors[0]), linear(X))
    assert not_yet.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "onnx/linear: missing capabilities: image_classification" in (not_yet.details() or "")
    assert bare_not_yet.details() == not_yet.details()
    assert text.model_id == "scripted/echo"
    assert [i.WhichOneof("kind") for _, i, _ in text_model.calls] == ["text"]
    assert vision.code() == grpc.StatusCode.FAILED_PRECONDITION  # no vision model here
    assert "missing capabilities: vision" in (vision.details() or "")


async def test_an_image_classification_task_finds_the_classifier(
    make_stack: StackFactory, onnx_dir: Path
) -> None:
    stack = await _stack(make_stack, onnx_dir, ScriptedEngine())
    classify = _request(C.Input(image=C.Image(data=png((255, 0, 0)))))
    classify.task.type = selector_pb2.TASK_TYPE_CLASSIFICATION
    async with grpc.aio.insecure_channel(stack.address) as channel:
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        answer = await gateway.Generate(classify, timeout=30)
    assert (answer.model_id, answer.text) == ("onnx/colours", "red")


async def test_the_gateway_refuses_a_modality_the_model_does_not_take(
    make_stack: StackFactory, onnx_dir: Path
) -> None:
    text_model = ScriptedEngine()
    stack = await _stack(make_stack, onnx_dir, text_model)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        text_to_tensor = await _refusal(gateway, _request(C.Input(text="hi"), "onnx/linear"))
        tensor_to_text = await _refusal(gateway, _request(tensors_input(x=X), "scripted/echo"))
    assert text_to_tensor.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "model 'onnx/linear' does not take MODALITY_TEXT input" in (
        text_to_tensor.details() or ""
    )
    assert tensor_to_text.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "model 'scripted/echo' does not take MODALITY_TENSOR input" in (
        tensor_to_text.details() or ""
    )
    assert text_model.calls == []


@pytest.mark.parametrize(
    ("model", "model_input", "field", "message"),
    [
        (
            "onnx/linear",
            tensors_input(x=X.astype(np.float64)),
            "input.tensors[0].dtype",
            "input.tensors[0].dtype is 'float64'; model 'onnx/linear' input 'x' float32",
        ),
        (
            "onnx/linear",
            tensors_input(x=np.zeros((2, 5), np.float32)),
            "input.tensors[0].shape",
            "dimension 1 is 5; model 'onnx/linear' input 'x' float32[batch, 4] fixes it at 4",
        ),
        (
            "onnx/linear",
            tensors_input(z=X),
            "input.tensors[0].name",
            "input.tensors[0].name 'z': model 'onnx/linear' has no input of that name",
        ),
        (
            "onnx/colours",
            C.Input(image=C.Image(data=b"GIF89a, or so it says")),
            "input.image",
            "input.image cannot be decoded as a image/gif image",
        ),
        (
            "onnx/colours",
            C.Input(image=C.Image(data=b"plain text")),
            "input.image.data",
            "input.image.data is not a PNG/JPEG/WebP/GIF image",
        ),
    ],
)
async def test_bad_input_comes_back_naming_its_field(
    make_stack: StackFactory,
    onnx_dir: Path,
    model: str,
    model_input: C.Input,
    field: str,
    message: str,
) -> None:
    stack = await _stack(make_stack, onnx_dir, ScriptedEngine())
    async with grpc.aio.insecure_channel(stack.address) as channel:
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        refused = await _refusal(gateway, _request(model_input, model))
    error = error_from_rpc(refused)
    assert isinstance(error, InvalidRequest)
    assert error.field == field
    assert message in error.message


async def test_a_tensor_with_a_short_data_field_is_refused(
    make_stack: StackFactory, onnx_dir: Path
) -> None:
    stack = await _stack(make_stack, onnx_dir, ScriptedEngine())
    request = _request(tensors_input(x=X), "onnx/linear")
    request.input.tensors.tensors[0].data = request.input.tensors.tensors[0].data[:-1]
    async with grpc.aio.insecure_channel(stack.address) as channel:
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        error = error_from_rpc(await _refusal(gateway, request))
    assert isinstance(error, InvalidRequest) and error.field == "input.tensors[0].data"
    assert "is 31 bytes; shape [2, 4] of float32 takes 32" in error.message


async def test_an_image_over_the_input_size_limit_is_refused_by_the_gateway(
    make_stack: StackFactory, onnx_dir: Path
) -> None:
    stack = await _stack(make_stack, onnx_dir, ScriptedEngine())
    big = png((255, 0, 0)) + b"\0" * (1024 * 1024)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        refused = await _refusal(
            gateway, _request(C.Input(image=C.Image(data=big)), "onnx/colours")
        )
    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert isinstance(error_from_rpc(refused), RequestTooLarge)
    assert "security.input_limits.max_input_bytes" in (refused.details() or "")
