"""BatchGenerate and Compare: one result per item, failures in their own slot."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from conftest import StackFactory
from support.scripted_engine import ScriptedEngine

from modelyard_client.v1 import gateway_pb2, gateway_pb2_grpc


def _item(model: str, text: str = "hi") -> gateway_pb2.GenerateRequest:
    req = gateway_pb2.GenerateRequest(model=model)
    req.input.text = text
    req.params.max_tokens = 4
    return req


@pytest.fixture
async def stub(make_stack: StackFactory) -> AsyncIterator[gateway_pb2_grpc.GatewayServiceAsyncStub]:
    engines = [
        ScriptedEngine(("scripted/a",), pieces=("A",)),
        ScriptedEngine(("scripted/b",), pieces=("B", "b")),
    ]
    stack = await make_stack(roles=("registry", "gateway"), engines=engines)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        yield gateway_pb2_grpc.GatewayServiceStub(channel)


async def test_batch_keeps_order_and_isolates_failures(
    stub: gateway_pb2_grpc.GatewayServiceAsyncStub,
) -> None:
    reply = await stub.BatchGenerate(
        gateway_pb2.BatchGenerateRequest(
            requests=[_item("scripted/b"), _item("nope/x"), _item("scripted/a", text="")]
        )
    )
    first, missing, empty = reply.results
    assert first.response.text == "Bb" and first.response.model_id == "scripted/b"
    assert missing.error.code == grpc.StatusCode.NOT_FOUND.value[0]
    assert "'nope/x'" in missing.error.message
    assert empty.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]


async def test_compare_runs_each_model(stub: gateway_pb2_grpc.GatewayServiceAsyncStub) -> None:
    request = gateway_pb2.CompareRequest(models=["scripted/a", "scripted/b"])
    request.input.text = "same question"
    reply = await stub.Compare(request)
    assert [(r.response.model_id, r.response.text) for r in reply.results] == [
        ("scripted/a", "A"),
        ("scripted/b", "Bb"),
    ]


@pytest.mark.parametrize(
    ("request_", "needle"),
    [
        (gateway_pb2.BatchGenerateRequest(), "the batch is empty"),
        (
            gateway_pb2.BatchGenerateRequest(requests=[_item("scripted/a")] * 65),
            "the batch has 65 items; the limit is 64",
        ),
    ],
)
async def test_bad_batches_are_refused(
    stub: gateway_pb2_grpc.GatewayServiceAsyncStub,
    request_: gateway_pb2.BatchGenerateRequest,
    needle: str,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.BatchGenerate(request_)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in (info.value.details() or "")


async def test_compare_refuses_duplicates(stub: gateway_pb2_grpc.GatewayServiceAsyncStub) -> None:
    request = gateway_pb2.CompareRequest(models=["scripted/a", "scripted/a"])
    request.input.text = "x"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Compare(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_batch_items_are_charged_to_the_callers_key(make_stack: StackFactory) -> None:
    from modelyard.ratelimit import LimiterConfig, QuotaConfig, Rates

    limiter = LimiterConfig(quotas=QuotaConfig(per_key=Rates(requests_per_minute=2)))
    stack = await make_stack(
        roles=("registry", "gateway"),
        engines=[ScriptedEngine(("scripted/a",), pieces=("A",))],
        limiter=limiter,
    )
    batch = gateway_pb2.BatchGenerateRequest(requests=[_item("scripted/a")] * 3)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        reply = await stub.BatchGenerate(batch, metadata=(("x-api-key", "key-one"),))
        other = await stub.BatchGenerate(batch, metadata=(("x-api-key", "key-two"),))
    codes = sorted(r.error.code for r in reply.results)
    assert codes == [0, 0, grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]]
    assert sum(1 for r in other.results if r.HasField("response")) == 2  # its own budget
