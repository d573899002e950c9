"""A call whose client sets no deadline gets the gateway's default one (server.default_deadline).

Without it a silent upstream held the call for the OpenAI-compatible
provider's 120 s read timeout, or the gateway's 600 s bound on a backend call.
Each test guards its call with a 5 s wait of its own: before the default
deadline existed, that guard is what ended them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TypeVar

import grpc
import pytest
from conftest import StackFactory
from support.scripted_engine import ScriptedEngine

from modelyard.config import parse_config
from modelyard_client.v1 import gateway_pb2, gateway_pb2_grpc

T = TypeVar("T")


def _silent() -> ScriptedEngine:
    return ScriptedEngine(pieces=("never",), delay_s=30.0)  # says nothing for 30 s


def _request(model: str = "scripted/echo") -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=model)
    request.input.text = "hi"
    request.params.max_tokens = 4
    return request


async def _guarded(call: Awaitable[T]) -> T:
    return await asyncio.wait_for(call, timeout=5)


async def _generate(address: str, *, streamed: bool, deadline_s: float | None = None) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        if streamed:
            async for _ in stub.GenerateStream(_request(), timeout=deadline_s):
                pass
        else:
            await stub.Generate(_request(), timeout=deadline_s)


@pytest.mark.parametrize("streamed", [False, True], ids=["Generate", "GenerateStream"])
async def test_a_silent_in_process_backend_ends_at_the_default_deadline_naming_it(
    make_stack: StackFactory, streamed: bool
) -> None:
    stack = await make_stack(
        roles=("registry", "gateway"), engines=[_silent()], default_deadline_s=0.5
    )
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _guarded(_generate(stack.address, streamed=streamed))
    assert 0.5 <= time.monotonic() - started < 2.5
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # The backend is given what is left of the deadline when its call starts:
    # 0.5s, or a hair less on a loaded machine (0.499s).
    details, _, left = (info.value.details() or "").rpartition(" ")
    assert details == (
        "no answer within the default deadline of 0.5s (the call set none: set a deadline on "
        "the call, or server.default_deadline): "
        "backend 'scripted' (in process) did not finish within"
    )
    assert left.endswith("s") and 0.4 < float(left[:-1]) <= 0.5, left


async def test_a_silent_backend_over_grpc_ends_at_the_default_deadline(
    make_stack: StackFactory,
) -> None:
    backend = await make_stack(roles=("registry",), engines=[_silent()])
    gateway = await make_stack(
        roles=("gateway",), registry_address=backend.address, default_deadline_s=0.5
    )
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _guarded(_generate(gateway.address, streamed=False))
    assert 0.5 <= time.monotonic() - started < 2.5
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert info.value.details() == (
        "no answer within the default deadline of 0.5s (the call set none: set a deadline on "
        "the call, or server.default_deadline): "
        f"backend 'scripted' at {backend.address} did not answer in time: Deadline Exceeded"
    )


async def test_the_callers_own_deadline_is_not_cut_to_the_default(
    make_stack: StackFactory,
) -> None:
    engine = ScriptedEngine(pieces=("late",), delay_s=1.0)
    stack = await make_stack(
        roles=("registry", "gateway"), engines=[engine], default_deadline_s=0.5
    )
    await _guarded(_generate(stack.address, streamed=False, deadline_s=4))


async def test_one_default_deadline_bounds_a_whole_batch(make_stack: StackFactory) -> None:
    # The lone deployment stays in however often it times out (else its circuit opens
    # after 5, and the second round is refused at once, unsent).
    circuit = parse_config("model_system: {gateway: {circuit: {max_ejected_share: 0.5}}}")
    stack = await make_stack(
        roles=("registry", "gateway"),
        engines=[_silent()],
        default_deadline_s=0.5,
        config=circuit,
    )
    batch = gateway_pb2.BatchGenerateRequest(requests=[_request()] * 16)  # two rounds of 8
    started = time.monotonic()
    async with grpc.aio.insecure_channel(stack.address) as channel:
        reply = await _guarded(gateway_pb2_grpc.GatewayServiceStub(channel).BatchGenerate(batch))
    assert 0.5 <= time.monotonic() - started < 1.0  # not 0.5 s for each round
    assert {r.error.code for r in reply.results} == {grpc.StatusCode.DEADLINE_EXCEEDED.value[0]}
