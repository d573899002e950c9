"""Gateway behaviours that mutation testing found unchecked (docs/testing.md).

Batch and Compare at their limits with every refusal's whole message, and what
Compare hands each model, through a real in-process stack and gRPC stubs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass

import grpc
import pytest
from conftest import StackFactory
from support.scripted_engine import ScriptedEngine

from modelyard.ratelimit import LimiterConfig, QuotaConfig, Rates
from modelyard_client.errors import (
    AllModelsFailed,
    BackendUnavailable,
    ModelyardError,
    error_from_rpc,
)
from modelyard_client.v1 import gateway_pb2, gateway_pb2_grpc


@dataclass
class Gateway:
    stub: gateway_pb2_grpc.GatewayServiceAsyncStub
    a: ScriptedEngine
    b: ScriptedEngine


@pytest.fixture
async def gateway(make_stack: StackFactory) -> AsyncIterator[Gateway]:
    a = ScriptedEngine(("scripted/a",), pieces=("A",))
    b = ScriptedEngine(("scripted/b",), pieces=("B", "b"))
    stack = await make_stack(roles=("registry", "gateway"), engines=[a, b])
    async with grpc.aio.insecure_channel(stack.address) as channel:
        yield Gateway(gateway_pb2_grpc.GatewayServiceStub(channel), a, b)


def _item(model: str) -> gateway_pb2.GenerateRequest:
    req = gateway_pb2.GenerateRequest(model=model)
    req.input.text = "hi"
    req.params.max_tokens = 4
    return req


async def _refusal(call: Awaitable[object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value.code(), info.value.details() or ""


async def test_a_batch_of_exactly_the_limit_is_served(gateway: Gateway) -> None:
    reply = await gateway.stub.BatchGenerate(
        gateway_pb2.BatchGenerateRequest(requests=[_item("scripted/a")] * 64)
    )
    assert [r.response.text for r in reply.results] == ["A"] * 64


async def test_batch_refusals_are_the_whole_message(gateway: Gateway) -> None:
    assert await _refusal(gateway.stub.BatchGenerate(gateway_pb2.BatchGenerateRequest())) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "the batch is empty",
    )
    too_many = gateway_pb2.BatchGenerateRequest(requests=[_item("scripted/a")] * 65)
    assert await _refusal(gateway.stub.BatchGenerate(too_many)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "the batch has 65 items; the limit is 64 (security.input_limits.max_batch_items)",
    )


async def test_batch_refusals_name_the_requests_field(gateway: Gateway) -> None:
    too_many = gateway_pb2.BatchGenerateRequest(requests=[_item("scripted/a")] * 65)
    for request in (gateway_pb2.BatchGenerateRequest(), too_many):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await gateway.stub.BatchGenerate(request)
        err = error_from_rpc(info.value)
        assert (type(err).__name__, getattr(err, "field", None)) == ("InvalidRequest", "requests")


async def test_compare_of_one_model_is_served(gateway: Gateway) -> None:
    request = gateway_pb2.CompareRequest(models=["scripted/b"])
    request.input.text = "q"
    reply = await gateway.stub.Compare(request)
    assert [(r.response.model_id, r.response.text) for r in reply.results] == [("scripted/b", "Bb")]


async def test_compare_refusals_are_the_whole_message(gateway: Gateway) -> None:
    none = gateway_pb2.CompareRequest()
    none.input.text = "q"
    assert await _refusal(gateway.stub.Compare(none)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "compare needs at least one model",
    )
    twice = gateway_pb2.CompareRequest(models=["scripted/a", "scripted/a"])
    twice.input.text = "q"
    assert await _refusal(gateway.stub.Compare(twice)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "compare lists a model more than once",
    )


async def test_compare_hands_every_model_the_input_and_params(gateway: Gateway) -> None:
    request = gateway_pb2.CompareRequest(models=["scripted/a", "scripted/b"])
    request.input.text = "same question"
    request.params.max_tokens = 7
    request.params.temperature = 0.25
    await gateway.stub.Compare(request)
    for engine in (gateway.a, gateway.b):
        ((_, model_input, params),) = engine.calls
        assert model_input.text == "same question"
        assert (params.max_tokens, params.temperature) == (7, 0.25)


async def test_compare_without_params_gets_the_gateways_default_budget(gateway: Gateway) -> None:
    request = gateway_pb2.CompareRequest(models=["scripted/a"])
    request.input.text = "q"
    await gateway.stub.Compare(request)
    ((_, _, params),) = gateway.a.calls
    assert params.max_tokens == 256


async def _failure(
    make_stack: StackFactory, engines: list[ScriptedEngine], request: gateway_pb2.GenerateRequest
) -> ModelyardError:
    """How a request naming no model fails when every model it is tried on fails."""
    stack = await make_stack(roles=("registry", "gateway"), engines=engines)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await gateway_pb2_grpc.GatewayServiceStub(channel).Generate(request)
    return error_from_rpc(info.value)


def _unnamed(max_tokens: int = 0) -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest()
    request.input.text = "hi"
    request.params.max_tokens = max_tokens
    return request


def _called(*engines: ScriptedEngine) -> list[str]:
    return [model_id for engine in engines for model_id, _, _ in engine.calls]


async def test_without_a_model_the_best_and_two_runners_up_are_tried(
    make_stack: StackFactory,
) -> None:
    engine = ScriptedEngine(("s/a", "s/b", "s/c", "s/d"), fail_with=BackendUnavailable("down"))
    error = await _failure(make_stack, [engine], _unnamed())
    # Equal scores: ties go to the lower id, so the chain is a, b, c (selection_fallbacks=2).
    assert isinstance(error, AllModelsFailed)
    assert [a.model_id for a in error.attempts] == ["s/a", "s/b", "s/c"]
    assert _called(engine) == ["s/a", "s/b", "s/c"]


async def test_the_selection_counts_the_default_output_budget(make_stack: StackFactory) -> None:
    # s/a would win the tie, but 256 default output tokens do not fit its 100: only s/b
    # is tried, so its own error comes back rather than AllModelsFailed.
    small = ScriptedEngine(("s/a",), context_window=100)
    big = ScriptedEngine(("s/b",), fail_with=BackendUnavailable("down"))
    error = await _failure(make_stack, [small, big], _unnamed())
    assert (type(error), error.message) == (BackendUnavailable, "down")
    assert _called(small, big) == ["s/b"]


async def test_the_requests_constraints_reach_the_selection(make_stack: StackFactory) -> None:
    engine = ScriptedEngine(("s/a", "s/b"), fail_with=BackendUnavailable("down"))
    request = _unnamed()
    request.constraints.excluded_models.append("s/a")
    error = await _failure(make_stack, [engine], request)
    assert (type(error), error.message) == (BackendUnavailable, "down")
    assert _called(engine) == ["s/b"]


async def test_compare_items_are_charged_to_the_callers_key(make_stack: StackFactory) -> None:
    limiter = LimiterConfig(quotas=QuotaConfig(per_key=Rates(requests_per_minute=2)))
    engine = ScriptedEngine(("s/a", "s/b", "s/c"), pieces=("x",))
    stack = await make_stack(roles=("registry", "gateway"), engines=[engine], limiter=limiter)
    request = gateway_pb2.CompareRequest(models=["s/a", "s/b", "s/c"])
    request.input.text = "q"
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        one = await stub.Compare(request, metadata=(("x-api-key", "key-one"),))
        two = await stub.Compare(request, metadata=(("x-api-key", "key-two"),))
    exhausted = grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    for reply in (one, two):  # each key its own budget of 2
        assert sorted(r.error.code for r in reply.results) == [0, 0, exhausted]
