"""Fallback lists set at run time: checked, stored with the routes, kept by swaps, watched.

A running stack (registry, hot-swap, gateway, an openai_compat backend in
front of the two-model fake upstream); `SetFallbacks` through gRPC, the
gateway's copy read from its `RouteView`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc
import pytest
from backends.openai_compat.openai_fake import FakeUpstream
from conftest import StackFactory

from modelyard.assembly import Stack
from modelyard.cli import main
from modelyard.config import parse_config
from modelyard_client.v1 import gateway_pb2, gateway_pb2_grpc, hotswap_pb2, hotswap_pb2_grpc

ROLES = ("registry", "hotswap", "gateway", "backend-openai-compat")
A, B = "custom/model-a", "custom/model-b"


async def _stack(make_stack: StackFactory, upstream: FakeUpstream) -> Stack:
    config = parse_config(
        f"""
model_system:
  hot_swap: {{grace_period_ms: 0, routes: {{chat: {A}, other: {B}}}}}
  backends:
    custom: {{kind: openai_compat, endpoint: "{upstream.url}"}}
"""
    )
    return await make_stack(roles=ROLES, config=config)


async def _until_seen(stack: Stack, check: Callable[[], bool]) -> None:
    """Until the gateway's copy of the route table passes `check`."""
    async with asyncio.timeout(5):
        while True:
            if check():
                return
            await asyncio.sleep(0.01)


async def test_an_alias_and_a_model_get_fallbacks_every_gateway_sees(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    stack = await _stack(make_stack, upstream)
    view = stack.route_view
    assert view is not None
    async with grpc.aio.insecure_channel(stack.address) as channel:
        hotswap = hotswap_pb2_grpc.HotSwapServiceStub(channel)
        route = await hotswap.SetFallbacks(
            hotswap_pb2.SetFallbacksRequest(alias="chat", fallback_models=[B, "other"])
        )
        assert (route.alias, route.model_id, list(route.fallback_models)) == (
            "chat",
            A,
            [B, "other"],
        )
        model = await hotswap.SetFallbacks(
            hotswap_pb2.SetFallbacksRequest(for_model=A, fallback_models=[B])
        )
        assert (model.for_model, model.model_id, list(model.fallback_models)) == (A, "", [B])
        await _until_seen(stack, lambda: view.fallbacks_of(A) == [B])
        chat = view.for_alias("chat")
        assert chat is not None and list(chat.fallback_models) == [B, "other"]

        # A swap moves the alias's model and keeps its fallbacks.
        swap = await hotswap.Swap(hotswap_pb2.SwapRequest(alias="chat", target_model_id=B))
        async for status in hotswap.WatchSwap(hotswap_pb2.GetSwapRequest(swap_id=swap.swap_id)):
            last = status
        assert last.phase == hotswap_pb2.SwapStatus.PHASE_DONE, last.error
        moved = await hotswap.GetRoute(hotswap_pb2.GetRouteRequest(alias="chat"))
        assert (moved.model_id, list(moved.fallback_models)) == (B, [B, "other"])

        # An empty list clears.
        cleared = await hotswap.SetFallbacks(hotswap_pb2.SetFallbacksRequest(for_model=A))
        assert list(cleared.fallback_models) == []
        await _until_seen(stack, lambda: view.fallbacks_of(A) == [])
        listed = await hotswap.ListRoutes(hotswap_pb2.ListRoutesRequest())
        assert [r.alias or r.for_model for r in listed.routes] == ["chat", "other", A]


@pytest.mark.parametrize(
    ("request_fields", "code", "message"),
    [
        (
            {"alias": "nowhere", "fallback_models": [A]},
            grpc.StatusCode.NOT_FOUND,
            "no route for alias 'nowhere': fallbacks follow an alias's route",
        ),
        (
            {"alias": "chat", "for_model": A, "fallback_models": [B]},
            grpc.StatusCode.INVALID_ARGUMENT,
            "a route is for an alias, a task type or a model, not more than one",
        ),
        (
            {"alias": "chat", "fallback_models": ["custom/nope"]},
            grpc.StatusCode.NOT_FOUND,
            "model 'custom/nope' is not in the catalog (fallback_models[0])",
        ),
        (
            {"alias": "chat", "fallback_models": [B, B]},
            grpc.StatusCode.INVALID_ARGUMENT,
            "fallback_models[1] 'custom/model-b' is named twice",
        ),
        (
            {"alias": "chat", "fallback_models": [A]},
            grpc.StatusCode.INVALID_ARGUMENT,
            "fallback_models[0] 'custom/model-a' is the model it would stand in for",
        ),
        (
            {"alias": "chat", "fallback_models": ["ghost"]},
            grpc.StatusCode.NOT_FOUND,
            "fallback_models[0] names alias 'ghost', which has no route",
        ),
        (
            {"for_model": "custom/nope", "fallback_models": [A]},
            grpc.StatusCode.NOT_FOUND,
            "model 'custom/nope' is not in the catalog (for_model)",
        ),
        (
            {"alias": "chat", "fallback_models": [B] * 9},
            grpc.StatusCode.INVALID_ARGUMENT,
            "fallback_models has 9 entries; the limit is 8",
        ),
    ],
)
async def test_a_bad_fallback_list_is_refused_naming_the_problem_and_nothing_changes(
    make_stack: StackFactory,
    upstream: FakeUpstream,
    request_fields: dict[str, object],
    code: grpc.StatusCode,
    message: str,
) -> None:
    stack = await _stack(make_stack, upstream)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        hotswap = hotswap_pb2_grpc.HotSwapServiceStub(channel)
        before = await hotswap.ListRoutes(hotswap_pb2.ListRoutesRequest())
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await hotswap.SetFallbacks(hotswap_pb2.SetFallbacksRequest(**request_fields))  # type: ignore[arg-type]
        after = await hotswap.ListRoutes(hotswap_pb2.ListRoutesRequest())
    assert refused.value.code() == code
    assert message in (refused.value.details() or "")
    assert after == before


async def test_the_cli_sets_and_prints_fallbacks(
    make_stack: StackFactory, upstream: FakeUpstream, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = await _stack(make_stack, upstream)
    code = await asyncio.to_thread(main, ["fallbacks", A, B, "--address", stack.address])
    assert code == 0
    assert capsys.readouterr().out == f"model:{A}\t-\trev=3\tfallbacks={B}\n"
    code = await asyncio.to_thread(main, ["routes", "--address", stack.address])
    assert code == 0
    assert capsys.readouterr().out.splitlines() == [
        f"chat\t{A}\trev=1",
        f"other\t{B}\trev=2",
        f"model:{A}\t-\trev=3\tfallbacks={B}",
    ]


async def test_a_gateway_tries_the_fallbacks_set_at_run_time(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    upstream.failure_rates["model-a"] = 1.0  # every call to model-a answered HTTP 500
    stack = await _stack(make_stack, upstream)
    view = stack.route_view
    assert view is not None
    async with grpc.aio.insecure_channel(stack.address) as channel:
        hotswap = hotswap_pb2_grpc.HotSwapServiceStub(channel)
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        request = gateway_pb2.GenerateRequest(model="chat")
        request.input.text = "hi"
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await gateway.Generate(request, timeout=10)
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE  # no fallback yet

        await hotswap.SetFallbacks(
            hotswap_pb2.SetFallbacksRequest(alias="chat", fallback_models=[B])
        )
        await _until_seen(stack, lambda: bool(view.for_alias("chat").fallback_models))  # type: ignore[union-attr]
        answer = await gateway.Generate(request, timeout=10)
        assert answer.model_id == B

        await hotswap.SetFallbacks(
            hotswap_pb2.SetFallbacksRequest(for_model=A, fallback_models=[B])
        )
        await _until_seen(stack, lambda: view.fallbacks_of(A) == [B])
        by_id = gateway_pb2.GenerateRequest(model=A)
        by_id.input.text = "hi"
        assert (await gateway.Generate(by_id, timeout=10)).model_id == B
