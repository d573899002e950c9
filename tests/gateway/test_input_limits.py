"""security.input_limits: each limit refused before any backend call, naming its key and value;
streams per key; a client that stops reading is cut, its backend call cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable

import grpc
import pytest
from conftest import StackFactory
from support.endless_engine import PIECE, EndlessEngine
from support.scripted_engine import ScriptedEngine

from modelyard.assembly import Stack
from modelyard.config import ModelyardConfig, parse_config
from modelyard_client.errors import SlowReaderCut, TooManyStreams, error_from_rpc
from modelyard_client.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    keys_pb2,
    keys_pb2_grpc,
)

ROLES = ("registry", "gateway")


def _config(limits: str) -> ModelyardConfig:
    return parse_config(f"model_system:\n  security:\n    input_limits: {{{limits}}}\n")


def _request(text: str = "hi") -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model="scripted/echo")
    request.input.text = text
    request.params.max_tokens = 4
    return request


def _chat(count: int) -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model="scripted/echo")
    request.input.chat.messages.extend(
        common_pb2.ChatMessage(role="user", content=f"m{i}") for i in range(count)
    )
    return request


def _tokens(request: gateway_pb2.GenerateRequest) -> gateway_pb2.GenerateRequest:
    request.params.max_tokens = 1001
    return request


def _compare(count: int) -> gateway_pb2.CompareRequest:
    request = gateway_pb2.CompareRequest(models=[f"scripted/m{i}" for i in range(count)])
    request.input.text = "hi"
    return request


Call = Callable[[gateway_pb2_grpc.GatewayServiceStub], object]

# (limits, the call over one of them, code, the whole message)
OVER: dict[str, tuple[str, Call, grpc.StatusCode, str]] = {
    "input-bytes": (
        "max_input_bytes: 100",
        lambda stub: stub.Generate(_request("x" * 99), timeout=10),  # 2 bytes of framing
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "input is 101 bytes; the limit is 100 bytes (security.input_limits.max_input_bytes)",
    ),
    "max-tokens": (
        "max_tokens: 1000",
        lambda stub: stub.Generate(_tokens(_request()), timeout=10),
        grpc.StatusCode.INVALID_ARGUMENT,
        "params.max_tokens 1001 is above the gateway's ceiling of 1000 "
        "(security.input_limits.max_tokens)",
    ),
    "messages": (
        "max_messages: 3",
        lambda stub: stub.Generate(_chat(4), timeout=10),
        grpc.StatusCode.INVALID_ARGUMENT,
        "input.chat.messages has 4 entries; the limit is 3 (security.input_limits.max_messages)",
    ),
    "compare-fan-out": (
        "max_compare_models: 2",
        lambda stub: stub.Compare(_compare(3), timeout=10),
        grpc.StatusCode.INVALID_ARGUMENT,
        "models has 3 entries; the limit is 2 (security.input_limits.max_compare_models)",
    ),
    "batch-size": (
        "max_batch_items: 2",
        lambda stub: stub.BatchGenerate(
            gateway_pb2.BatchGenerateRequest(requests=[_request()] * 3), timeout=10
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "the batch has 3 items; the limit is 2 (security.input_limits.max_batch_items)",
    ),
}


@pytest.mark.parametrize(("limits", "call", "code", "message"), OVER.values(), ids=OVER.keys())
async def test_each_input_limit_is_refused_naming_it_before_the_backend_sees_anything(
    make_stack: StackFactory, limits: str, call: Call, code: grpc.StatusCode, message: str
) -> None:
    engine = ScriptedEngine(("scripted/echo", "scripted/m0", "scripted/m1", "scripted/m2"))
    stack = await make_stack(roles=ROLES, engines=[engine], config=_config(limits))
    async with grpc.aio.insecure_channel(stack.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call(gateway_pb2_grpc.GatewayServiceStub(channel))  # type: ignore[misc]
    assert (info.value.code(), info.value.details()) == (code, message)
    assert engine.calls == []


async def test_at_each_limit_the_call_goes_through(make_stack: StackFactory) -> None:
    limits = "max_input_bytes: 100, max_tokens: 1000, max_messages: 3, max_batch_items: 2"
    engine = ScriptedEngine()
    stack = await make_stack(roles=ROLES, engines=[engine], config=_config(limits))
    at_limit = _request("x" * 98)  # 100 bytes with its framing
    at_limit.params.max_tokens = 1000
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        assert (await stub.Generate(at_limit, timeout=10)).text == "hello world"
        assert (await stub.Generate(_chat(3), timeout=10)).text == "hello world"
        batch = gateway_pb2.BatchGenerateRequest(requests=[_request()] * 2)
        assert len((await stub.BatchGenerate(batch, timeout=10)).results) == 2
    assert len(engine.calls) == 4


# ---- streams per key -----------------------------------------------------------


async def test_a_key_holds_at_most_its_streams_and_a_finished_one_frees_its_place(
    make_stack: StackFactory,
) -> None:
    engine = ScriptedEngine(pieces=("a", "b", "c"), delay_s=0.5)
    stack = await make_stack(
        roles=ROLES, engines=[engine], config=_config("max_streams_per_key: 2")
    )
    first_key = (("x-api-key", "key-one-1111"),)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        held = [stub.GenerateStream(_request(), metadata=first_key, timeout=20) for _ in range(2)]
        for call in held:
            await call.read()  # each one open, its backend call running
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in stub.GenerateStream(_request(), metadata=first_key, timeout=20):
                pass
        assert len(engine.calls) == 2  # the third never reached the backend
        # Another key, and a caller with no key (authentication off), are not held back.
        other = stub.GenerateStream(_request(), metadata=(("x-api-key", "key-two-2222"),))
        keyless = stub.GenerateStream(_request())
        assert [c.text async for c in other][:1] == ["a"]
        assert [c.text async for c in keyless][:1] == ["a"]
        for call in held:
            assert "".join([c.text async for c in _rest(call)]) == "bc"
        again = stub.GenerateStream(_request(), metadata=first_key, timeout=20)
        assert "".join([c.text async for c in again]) == "abc"
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    err = error_from_rpc(info.value)
    assert isinstance(err, TooManyStreams)
    assert (err.reason, err.limit) == ("TOO_MANY_STREAMS", 2)
    assert err.message == (
        "api key '...1111' already holds 2 open streams; the limit is 2 "
        "(security.input_limits.max_streams_per_key)"
    )
    assert "key-one" not in err.key  # a fingerprint, never the key


async def _rest(call: object) -> AsyncGenerator[gateway_pb2.GenerateChunk, None]:
    """The chunks of a stream already read from with ``read()``, to its end."""
    while isinstance(chunk := await call.read(), gateway_pb2.GenerateChunk):  # type: ignore[attr-defined]
        yield chunk


# ---- the slow reader -------------------------------------------------------------


async def _stack_cutting_after(
    make_stack: StackFactory, engine: EndlessEngine, cut_after: str
) -> Stack:
    config = _config(f"slow_reader_timeout: {cut_after}")
    return await make_stack(roles=ROLES, engines=[engine], config=config)


async def test_a_client_that_stops_reading_is_held_to_a_bounded_buffer_then_cut(
    make_stack: StackFactory,
) -> None:
    engine = EndlessEngine()
    stack = await _stack_cutting_after(make_stack, engine, "1500ms")
    async with grpc.aio.insecure_channel(stack.address) as channel:
        call = gateway_pb2_grpc.GatewayServiceStub(channel).GenerateStream(_request(), timeout=30)
        await call.read()  # then this client reads nothing more
        stalled_at = await engine.settled()
        assert not engine.closed.is_set()  # bounded while it waits: the producer stands still
        await asyncio.sleep(0.5)
        assert engine.pulled == stalled_at
        await asyncio.wait_for(engine.closed.wait(), 5)  # the cut cancels the backend call
        received = 1
        with pytest.raises(grpc.aio.AioRpcError) as info:
            while isinstance(chunk := await call.read(), gateway_pb2.GenerateChunk):
                assert chunk.text == PIECE
                received += 1
        audited = await audit_pb2_grpc.AuditServiceStub(channel).QueryAudit(
            audit_pb2.QueryAuditRequest(rpc="GenerateStream"), timeout=10
        )
    print(f"\n{stalled_at} chunks pulled from the backend before it stood still, {received} read")
    # What the backend produced is all in the client's window but for a chunk or two:
    # the gateway itself held no more than the write in flight.
    assert stalled_at - 2 <= received <= stalled_at
    assert stalled_at < 16 * 1024  # HTTP/2 flow control: a few MiB of 1 KiB chunks at most
    assert info.value.code() == grpc.StatusCode.ABORTED
    err = error_from_rpc(info.value)
    assert isinstance(err, SlowReaderCut)
    assert err.reason == "SLOW_READER"
    assert err.message == (
        "the client read nothing for 1.5s; the stream was cut "
        "(security.input_limits.slow_reader_timeout)"
    )
    (entry,) = audited.entries  # the audit log says why the stream ended
    assert (entry.code, entry.reason) == ("ABORTED", "SLOW_READER")


async def test_with_keys_required_the_streams_count_by_the_key_id(
    make_stack: StackFactory,
) -> None:
    admin = "admin-key-for-the-stream-limit"
    config = parse_config(
        """
model_system:
  security:
    input_limits: {max_streams_per_key: 1}
    auth: {required: true, admin_key: "${ADMIN}", service_key: "${SERVICE}"}
""",
        env={"ADMIN": admin, "SERVICE": "service-key-for-the-stream-limit"},
    )
    engine = ScriptedEngine(pieces=("a", "b"), delay_s=0.5)
    stack = await make_stack(roles=ROLES, engines=[engine], config=config)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        issued = await keys_pb2_grpc.KeyServiceStub(channel).CreateKey(
            keys_pb2.CreateKeyRequest(owner="ana"), metadata=(("x-api-key", admin),)
        )
        mine = (("x-api-key", issued.secret),)
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        held = stub.GenerateStream(_request(), metadata=mine, timeout=20)
        await held.read()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GenerateStream(_request(), metadata=mine, timeout=20).read()
        assert "".join([c.text async for c in _rest(held)]) == "b"
    err = error_from_rpc(info.value)
    assert isinstance(err, TooManyStreams)
    assert err.key == issued.key.id
    assert err.message.startswith(f"key '{issued.key.id}' already holds 1 open streams")
