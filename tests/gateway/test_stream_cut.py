"""A stream cut after output is ABORTED, whatever cut it; before output the codes stay.

Once a chunk has reached the caller, a retry on UNAVAILABLE would append a
second answer to half of the first: every failure after that point is
`StreamTruncated` saying how much was delivered. Before it, the backend's own
code stands (UNAVAILABLE, RESOURCE_EXHAUSTED... are the caller's to retry).
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from conftest import StackFactory
from support.scripted_engine import ScriptedEngine

from modelyard_client.errors import (
    BackendUnavailable,
    DeadlineExceeded,
    ModelyardError,
    ProviderError,
    RateLimited,
    StreamTruncated,
    error_from_rpc,
)
from modelyard_client.v1 import gateway_pb2, gateway_pb2_grpc


def _request(model: str, *fallbacks: str) -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=model, fallback_models=fallbacks)
    request.input.text = "hi"
    request.params.max_tokens = 8
    return request


async def _stream(
    address: str, request: gateway_pb2.GenerateRequest
) -> tuple[list[str], grpc.aio.AioRpcError]:
    received: list[str] = []
    async with grpc.aio.insecure_channel(address) as channel:
        call = gateway_pb2_grpc.GatewayServiceStub(channel).GenerateStream(request, timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for chunk in call:
                received.append(chunk.text)
    return received, info.value


FAILURES: dict[str, ModelyardError] = {
    "unavailable": BackendUnavailable("upstream 'x' went away"),
    "rate-limited": RateLimited("upstream 'x' answered HTTP 429", 2.0),
    "deadline": DeadlineExceeded("upstream 'x' did not answer in time"),
    "provider-error": ProviderError("upstream 'x' answered HTTP 500"),
}


@pytest.mark.parametrize("failure", FAILURES.values(), ids=FAILURES.keys())
async def test_any_failure_after_the_first_chunk_is_aborted_saying_what_was_delivered(
    make_stack: StackFactory, failure: ModelyardError
) -> None:
    broken = ScriptedEngine(
        ("scripted/broken",), pieces=("half", " an", " answer"), fail_with=failure, fail_after=2
    )
    good = ScriptedEngine(("scripted/good",), pieces=("ok",))
    stack = await make_stack(roles=("registry", "gateway"), engines=[broken, good])
    received, refused = await _stream(stack.address, _request("scripted/broken", "scripted/good"))
    assert received == ["half", " an"]
    assert refused.code() == grpc.StatusCode.ABORTED
    assert refused.details() == (
        "the answer of 'scripted/broken' was cut short after 2 chunks (7 characters) "
        f"had reached the caller: {failure.message}"
    )
    assert type(error_from_rpc(refused)) is StreamTruncated
    assert good.calls == []  # another model's answer cannot be appended to it


@pytest.mark.parametrize("failure", FAILURES.values(), ids=FAILURES.keys())
async def test_a_failure_before_the_first_chunk_keeps_its_code(
    make_stack: StackFactory, failure: ModelyardError
) -> None:
    broken = ScriptedEngine(("scripted/broken",), fail_with=failure, fail_after=0)
    stack = await make_stack(roles=("registry", "gateway"), engines=[broken])
    received, refused = await _stream(stack.address, _request("scripted/broken"))
    assert received == []
    assert refused.code() == failure.code
    assert refused.details() == failure.message


async def test_generate_cut_after_output_is_aborted_too(make_stack: StackFactory) -> None:
    broken = ScriptedEngine(
        ("scripted/broken",),
        pieces=("half",),
        fail_with=BackendUnavailable("upstream 'x' went away"),
        fail_after=1,
    )
    stack = await make_stack(roles=("registry", "gateway"), engines=[broken])
    async with grpc.aio.insecure_channel(stack.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await gateway_pb2_grpc.GatewayServiceStub(channel).Generate(
                _request("scripted/broken"), timeout=10
            )
    assert info.value.code() == grpc.StatusCode.ABORTED
    assert "after 1 chunk (4 characters) had reached the caller" in (info.value.details() or "")


async def test_a_backend_server_stopped_mid_stream_is_aborted(make_stack: StackFactory) -> None:
    slow = ScriptedEngine(pieces=tuple(f"w{i} " for i in range(50)), delay_s=0.1)
    backend = await make_stack(roles=("registry",), engines=[slow])
    gateway = await make_stack(roles=("gateway",), registry_address=backend.address)
    received: list[str] = []
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        call = gateway_pb2_grpc.GatewayServiceStub(channel).GenerateStream(
            _request("scripted/echo"), timeout=10
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for chunk in call:
                received.append(chunk.text)
                if len(received) == 2:  # the backend's process dies with the answer half sent
                    asyncio.get_running_loop().create_task(backend.server.server.stop(0))
    assert received[:2] == ["w0 ", "w1 "]
    assert 2 <= len(received) < 50
    assert info.value.code() == grpc.StatusCode.ABORTED
    delivered = f"after {len(received)} chunks ({len(''.join(received))} characters)"
    assert delivered in (info.value.details() or "")
    assert f"backend 'scripted' at {backend.address}" in (info.value.details() or "")
