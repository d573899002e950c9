"""An enum value no enum declares is the caller's INVALID_ARGUMENT in a task, and a stored
entry holding one is left out of selection, never the cause of an INTERNAL for everyone."""

from __future__ import annotations

import asyncio
import logging

import grpc
import pytest
from conftest import StackFactory
from support.scripted_engine import ScriptedEngine

from modelyard.assembly import Stack
from modelyard_client.errors import InvalidRequest, error_from_rpc
from modelyard_client.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    selector_pb2,
    selector_pb2_grpc,
)

C = common_pb2
# Past the 64-bit native mask (64, 255, 256, 2^31-1) and below any bit (-1).
UNKNOWN_CAPABILITIES = [255, 256, 2**31 - 1, -1, 64]
GOOD = "scripted/good"


async def _stack_with_catalog(make_stack: StackFactory, *stored: C.ModelEntry) -> Stack:
    """Registry, selector and gateway over a scripted model, plus `stored` written straight
    to the catalog (as an entry stored before the registry checked enum values)."""
    stack = await make_stack(
        roles=("registry", "selector", "gateway"), engines=[ScriptedEngine((GOOD,))]
    )
    assert stack.catalog is not None and stack.view is not None
    for entry in stored:
        stack.catalog.put(entry)
    wanted = {GOOD, *(e.id for e in stored)}
    deadline = asyncio.get_running_loop().time() + 10
    while {m.id for m in stack.view.models()} != wanted:
        assert asyncio.get_running_loop().time() < deadline, "the catalog copy never caught up"
        await asyncio.sleep(0.02)
    return stack


async def _refusal(call: grpc.aio.UnaryUnaryCall) -> InvalidRequest:  # type: ignore[type-arg]  # any request/response
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await call
    err = error_from_rpc(failed.value)
    assert isinstance(err, InvalidRequest), err
    return err


@pytest.mark.parametrize("value", UNKNOWN_CAPABILITIES)
async def test_select_refuses_an_unknown_required_capability_naming_it(
    make_stack: StackFactory, value: int
) -> None:
    stack = await _stack_with_catalog(make_stack)
    task = selector_pb2.Task(required_capabilities=[C.CAPABILITY_CHAT])
    task.required_capabilities.append(value)  # type: ignore[arg-type]  # the unknown value under test
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = selector_pb2_grpc.SelectorServiceStub(channel)
        err = await _refusal(stub.Select(selector_pb2.SelectRequest(task=task)))
    assert err.field == "task.required_capabilities[1]"
    assert err.message.startswith(
        f"task.required_capabilities[1] {value} is not a Capability value"
    )


@pytest.mark.parametrize(
    ("field", "task"),
    [
        ("task.type", selector_pb2.Task(type=99)),  # type: ignore[arg-type]  # the unknown value under test
        ("task.input_modality", selector_pb2.Task(input_modality=-3)),  # type: ignore[arg-type]  # idem
    ],
    ids=["type", "input-modality"],
)
async def test_select_refuses_the_other_unknown_task_enums(
    make_stack: StackFactory, field: str, task: selector_pb2.Task
) -> None:
    stack = await _stack_with_catalog(make_stack)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = selector_pb2_grpc.SelectorServiceStub(channel)
        err = await _refusal(stub.Select(selector_pb2.SelectRequest(task=task)))
    assert err.field == field


@pytest.mark.parametrize("value", UNKNOWN_CAPABILITIES)
async def test_a_generate_naming_no_model_refuses_an_unknown_capability(
    make_stack: StackFactory, value: int
) -> None:
    stack = await _stack_with_catalog(make_stack)
    request = gateway_pb2.GenerateRequest()
    request.input.text = "hello"
    request.task.required_capabilities.append(value)  # type: ignore[arg-type]  # the unknown value under test
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        err = await _refusal(stub.Generate(request, timeout=10))
    assert err.field == "task.required_capabilities[0]"


@pytest.mark.parametrize(
    ("field", "value"),
    [("capabilities", 255), ("capabilities", 64), ("input_modalities", 2**31 - 1)],
    ids=["capability-255", "capability-64", "modality-2^31-1"],
)
async def test_an_entry_stored_with_an_unknown_value_is_left_out_of_selection(
    make_stack: StackFactory, caplog: pytest.LogCaptureFixture, field: str, value: int
) -> None:
    bad = C.ModelEntry(id="legacy/bad", provider="legacy", health=C.HEALTH_STATUS_HEALTHY)
    bad.deployments.add(backend="scripted", endpoint="127.0.0.1:9")
    getattr(bad, field).append(value)
    caplog.set_level(logging.WARNING, logger="modelyard.selector.candidates")
    stack = await _stack_with_catalog(make_stack, bad)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        chosen = await selector_pb2_grpc.SelectorServiceStub(channel).Select(
            selector_pb2.SelectRequest()
        )
        request = gateway_pb2.GenerateRequest()
        request.input.text = "hello"
        answer = await gateway_pb2_grpc.GatewayServiceStub(channel).Generate(request, timeout=10)
    assert [c.model_id for c in chosen.candidates] == [GOOD]
    assert (chosen.model_id, answer.model_id) == (GOOD, GOOD)
    expected = (
        f"selection leaves out model 'legacy/bad': {field}[0] {value} is not a "
        f"{'Capability' if field == 'capabilities' else 'Modality'} value"
    )
    assert [r.getMessage() for r in caplog.records] == [expected]
