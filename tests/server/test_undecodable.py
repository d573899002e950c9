"""Bytes that are not the RPC's request message: INVALID_ARGUMENT in plain words, logged seldom."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from modelyard.server.runtime import bind, start_server
from modelyard.server.undecodable import UndecodableRequests
from modelyard.server.unimplemented import with_unimplemented
from modelyard_client.v1 import gateway_pb2, gateway_pb2_grpc

GENERATE = "/modelyard.v1.GatewayService/Generate"
GENERATE_STREAM = "/modelyard.v1.GatewayService/GenerateStream"
RAW = {"request_serializer": None, "response_deserializer": None}  # bytes both ways
NOT_A_GENERATE_REQUEST = "the request is not a valid modelyard.v1.GenerateRequest message"


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(number: int, body: bytes) -> bytes:
    """A length-delimited field: tag, length, body."""
    return _varint(number << 3 | 2) + _varint(len(body)) + body


def _nested_struct(depth: int) -> bytes:
    """A GenerateRequest whose input.structured nests lists `depth` deep (Value.list_value)."""
    value = _field(3, b"leaf")  # Value.string_value
    for _ in range(depth):
        value = _field(6, _field(1, value))  # Value.list_value: ListValue.values[0]
    struct = _field(1, _field(1, b"k") + _field(2, value))  # Struct.fields["k"]
    return _field(2, _field(5, struct))  # GenerateRequest.input.structured


def _valid() -> bytes:
    request = gateway_pb2.GenerateRequest(model="echo/model")
    request.input.text = "hello there"
    return request.SerializeToString()


UNDECODABLE = {
    "truncated": _valid()[:-4],  # a length says more bytes follow than do
    "bad-utf8": _field(1, b"echo/\xff\xfe"),  # model: a string field, not UTF-8
    "too-deep": _nested_struct(60),  # 120 messages deep (Value, ListValue): the parser stops at 100
}


class Echo(gateway_pb2_grpc.GatewayServiceServicer):
    async def Generate(self, request: Any, context: Any) -> gateway_pb2.GenerateResponse:
        return gateway_pb2.GenerateResponse(model_id=request.model, text=request.input.text)

    async def GenerateStream(self, request: Any, context: Any) -> AsyncIterator[Any]:
        yield gateway_pb2.GenerateChunk(text=request.input.text)


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    running = await start_server([bind(with_unimplemented(Echo))], "127.0.0.1:0")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        yield channel
    await running.server.stop(0)


def test_the_cases_are_what_they_say() -> None:
    # Each case fails to parse for its own reason (the parser's words, not sent to callers).
    reasons = {"truncated": "corrupt", "bad-utf8": "UTF-8", "too-deep": "MaxDepth"}
    for name, raw in UNDECODABLE.items():
        with pytest.raises(Exception, match=reasons[name]):
            gateway_pb2.GenerateRequest.FromString(raw)
    assert gateway_pb2.GenerateRequest.FromString(_nested_struct(40)).input.HasField("structured")


@pytest.mark.parametrize("case", sorted(UNDECODABLE))
@pytest.mark.parametrize("path", [GENERATE, GENERATE_STREAM])
async def test_an_undecodable_request_is_invalid_argument_in_plain_words(
    channel: grpc.aio.Channel, path: str, case: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        if path == GENERATE:
            await channel.unary_unary(path, **RAW)(UNDECODABLE[case], timeout=5)
        else:
            async for _ in channel.unary_stream(path, **RAW)(UNDECODABLE[case], timeout=5):
                pass
    exc = failed.value
    assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert exc.details() == NOT_A_GENERATE_REQUEST
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]  # grpc_status-stubs: grpc.Call only
    assert status is not None and len(status.details) == 1
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert (info.domain, info.reason) == ("modelyard", "INVALID_REQUEST")


async def test_a_good_request_still_parses_on_both_kinds_of_rpc(channel: grpc.aio.Channel) -> None:
    reply = await channel.unary_unary(GENERATE, **RAW)(_valid(), timeout=5)
    assert gateway_pb2.GenerateResponse.FromString(reply).text == "hello there"
    chunks = [c async for c in channel.unary_stream(GENERATE_STREAM, **RAW)(_valid(), timeout=5)]
    assert [gateway_pb2.GenerateChunk.FromString(c).text for c in chunks] == ["hello there"]


async def test_a_flood_of_undecodable_requests_logs_one_line_and_no_traceback(
    channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    generate = channel.unary_unary(GENERATE, **RAW)
    for _ in range(50):
        with pytest.raises(grpc.aio.AioRpcError):
            await generate(UNDECODABLE["truncated"], timeout=5)
    records = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert [(r.name, r.levelname) for r in records] == [("modelyard.server.undecodable", "WARNING")]
    assert (
        records[0]
        .getMessage()
        .startswith(
            "refused 1 undecodable request(s) (modelyard.v1.GatewayService/Generate: 1), "
            "latest from ipv4:127.0.0.1:"
        )
    )
    assert not any(r.exc_info for r in caplog.records)


class _Context:
    def peer(self) -> str:
        return "ipv4:10.0.0.7:5000"


async def test_refusals_within_the_interval_are_logged_together_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="modelyard.server.undecodable")
    requests = UndecodableRequests(interval_s=0.2)
    parse = gateway_pb2.GenerateRequest.FromString

    def refuse(rpc: str) -> None:
        with pytest.raises(Exception, match="is not a valid"):
            requests.parse(UNDECODABLE["bad-utf8"], parse, rpc, _Context())  # type: ignore[arg-type]  # only peer() is read

    refuse("modelyard.v1.GatewayService/Generate")  # the first: logged at once
    assert len(caplog.records) == 1
    for rpc in ["modelyard.v1.GatewayService/Generate"] * 2 + [
        "modelyard.v1.GatewayService/GenerateStream"
    ]:
        refuse(rpc)
    assert len(caplog.records) == 1  # counted, not logged yet
    await asyncio.sleep(0.3)
    assert [r.getMessage() for r in caplog.records][1:] == [
        "refused 3 undecodable request(s) (modelyard.v1.GatewayService/Generate: 2, "
        "modelyard.v1.GatewayService/GenerateStream: 1), latest from ipv4:10.0.0.7:5000; "
        "next report in 0.2s at most"
    ]
    await asyncio.sleep(0.2)
    assert len(caplog.records) == 2  # nothing new: no empty line
    refuse("modelyard.v1.GatewayService/Generate")  # after a quiet interval: logged at once
    assert len(caplog.records) == 3
