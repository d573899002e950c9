"""Routes through the gateway: an alias or a task type served by the model its route names.

The gateway holds a copy of the route table fed by `WatchRoutes` (in one
process or from a hot-swap service elsewhere): a request makes no
control-plane call, resolves its route once when it starts, and keeps that
model though the route moves while it runs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

import grpc
import pytest
from conftest import StackFactory
from support.scripted_engine import ScriptedEngine

from modelyard.assembly import Stack
from modelyard.config import default_config
from modelyard.config.schema import HotSwapConfig, ModelyardConfig
from modelyard_client.v1 import (
    gateway_pb2,
    gateway_pb2_grpc,
    hotswap_pb2,
    hotswap_pb2_grpc,
    selector_pb2,
)

CODE = selector_pb2.TASK_TYPE_CODE


def _config(routes: dict[str, str], task_routes: dict[str, str] | None = None) -> ModelyardConfig:
    # Built directly: the file's check wants each route's backend configured, and
    # the scripted engine is a test's, not the file's.
    hot_swap = HotSwapConfig(routes=routes, task_routes=task_routes or {})
    return dataclasses.replace(default_config({}), hot_swap=hot_swap)


def _request(model: str = "", text: str = "hi") -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=model)
    request.input.text = text
    request.params.max_tokens = 4
    return request


async def _generate(
    address: str, request: gateway_pb2.GenerateRequest
) -> gateway_pb2.GenerateResponse:
    async with grpc.aio.insecure_channel(address) as channel:
        response: gateway_pb2.GenerateResponse = await gateway_pb2_grpc.GatewayServiceStub(
            channel
        ).Generate(request, timeout=10)
        return response


async def _routed_stack(make_stack: StackFactory, engine: ScriptedEngine, **routes: str) -> Stack:
    return await make_stack(
        roles=("registry", "hotswap", "gateway"),
        engines=[engine],
        config=_config(dict(routes), {"code": "scripted/coder"}),
    )


async def test_an_alias_is_served_by_the_model_its_route_names(make_stack: StackFactory) -> None:
    engine = ScriptedEngine(("scripted/echo", "scripted/other", "scripted/coder"))
    stack = await _routed_stack(make_stack, engine, **{"chat-default": "scripted/other"})
    response = await _generate(stack.address, _request("chat-default"))
    assert response.model_id == "scripted/other"
    assert response.text == "hello world"
    assert [model for model, _, _ in engine.calls] == ["scripted/other"]


async def test_a_catalog_id_and_an_unknown_alias_are_not_routed(make_stack: StackFactory) -> None:
    engine = ScriptedEngine(("scripted/echo", "scripted/other", "scripted/coder"))
    stack = await _routed_stack(make_stack, engine, **{"chat-default": "scripted/other"})
    assert (await _generate(stack.address, _request("scripted/echo"))).model_id == "scripted/echo"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _generate(stack.address, _request("chat-unknown"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert info.value.details() == "model 'chat-unknown' is not in the catalog"


async def test_a_request_naming_no_model_takes_its_task_types_route(
    make_stack: StackFactory,
) -> None:
    engine = ScriptedEngine(("scripted/echo", "scripted/coder"))
    stack = await _routed_stack(make_stack, engine)
    explicit = _request()
    explicit.task.type = CODE
    assert (await _generate(stack.address, explicit)).model_id == "scripted/coder"
    # The type analysed from the input: a code fence is a code task.
    analysed = _request(text="fix this:\n```python\nprint(1\n```")
    assert (await _generate(stack.address, analysed)).model_id == "scripted/coder"
    assert [model for model, _, _ in engine.calls] == ["scripted/coder", "scripted/coder"]


async def test_the_routes_are_served_over_grpc(make_stack: StackFactory) -> None:
    engine = ScriptedEngine(("scripted/echo", "scripted/coder"))
    stack = await _routed_stack(make_stack, engine, **{"chat-default": "scripted/echo"})
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = hotswap_pb2_grpc.HotSwapServiceStub(channel)
        listed = await stub.ListRoutes(hotswap_pb2.ListRoutesRequest(), timeout=5)
        assert [(r.alias, r.task_type, r.model_id) for r in listed.routes] == [
            ("chat-default", 0, "scripted/echo"),
            ("", CODE, "scripted/coder"),
        ]
        one = await stub.GetRoute(hotswap_pb2.GetRouteRequest(task_type=CODE), timeout=5)
        assert one.model_id == "scripted/coder"
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetRoute(hotswap_pb2.GetRouteRequest(alias="nope"), timeout=5)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert info.value.details() == "no route for alias 'nope'"
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetRoute(hotswap_pb2.GetRouteRequest(alias="a/b"), timeout=5)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_moved_route_takes_new_calls_while_a_running_one_keeps_its_model(
    make_stack: StackFactory,
) -> None:
    engine = ScriptedEngine(
        ("scripted/echo", "scripted/other", "scripted/coder"),
        pieces=("a", "b", "c", "d", "e"),
        delay_s=0.2,
    )
    stack = await _routed_stack(make_stack, engine, **{"chat-default": "scripted/echo"})
    assert stack.routes is not None
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        running = stub.GenerateStream(_request("chat-default"), timeout=20)
        first = await running.read()
        assert isinstance(first, gateway_pb2.GenerateChunk)
        assert first.model_id == "scripted/echo"
        stack.routes.set_route("chat-default", 0, "scripted/other")
        moved_at = time.monotonic()
        while (await stub.Generate(_request("chat-default"), timeout=20)).model_id != (
            "scripted/other"
        ):
            assert time.monotonic() - moved_at < 2.0, "new calls still on the old model"
            await asyncio.sleep(0.05)
        rest = []
        while isinstance(chunk := await running.read(), gateway_pb2.GenerateChunk):
            rest.append(chunk)  # until grpc.aio.EOF
    texts = first.text + "".join(c.text for c in rest)
    assert texts == "abcde"
    assert rest[-1].finish_reason != 0  # the running call finished on the model it began on
    assert engine.calls[0][0] == "scripted/echo"


async def test_a_gateway_follows_a_hot_swap_service_in_another_server(
    make_stack: StackFactory,
) -> None:
    control = await make_stack(
        roles=("registry", "hotswap"), config=_config({"chat-default": "scripted/echo"})
    )
    engine = ScriptedEngine()
    gateway = await make_stack(
        roles=("gateway",),
        engines=[engine],
        registry_address=control.address,
        hotswap_address=control.address,
    )
    assert (await _generate(gateway.address, _request("chat-default"))).model_id == (
        "scripted/echo"
    )
    assert gateway.routes is None  # the table lives in the hot-swap service's server
