"""A streamed answer read whole: one rule for the backend's Infer and the gateway's Generate."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import grpc
from conftest import StackFactory
from support.scripted_engine import ScriptedEngine

from modelyard.assembly import Stack
from modelyard.backends.answer_stream import piece_to_chunk, whole_answer
from modelyard.backends.engine import Piece
from modelyard_client.v1 import (
    backend_pb2,
    backend_pb2_grpc,
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
)

C = common_pb2
DONE = Piece("!", C.FINISH_REASON_LENGTH, input_tokens=4, output_tokens=3)


async def _pieces(*pieces: Piece) -> AsyncGenerator[Piece, None]:
    for piece in pieces:
        yield piece


async def test_texts_join_and_the_last_piece_finishes() -> None:
    whole = await whole_answer(_pieces(Piece("a"), Piece("b"), DONE), empty=Piece(""))
    assert (whole.text, whole.first, whole.last) == ("ab!", Piece("a"), DONE)


async def test_an_empty_stream_is_the_empty_answer() -> None:
    empty = Piece("")
    whole = await whole_answer(_pieces(), empty=empty)
    assert (whole.text, whole.first, whole.last) == ("", empty, empty)


def test_only_the_finishing_piece_carries_usage_on_the_wire() -> None:
    assert piece_to_chunk(Piece("a")) == backend_pb2.InferChunk(text="a")
    assert piece_to_chunk(DONE) == backend_pb2.InferChunk(
        text="!",
        finish_reason=C.FINISH_REASON_LENGTH,
        usage=C.Usage(input_tokens=4, output_tokens=3),
    )


async def test_infer_and_generate_read_the_same_stream_alike(make_stack: StackFactory) -> None:
    engine = ScriptedEngine(("s/echo",), pieces=("hello", " ", "world"))
    stack: Stack = await make_stack(roles=("registry", "gateway"), engines=[engine])
    async with grpc.aio.insecure_channel(stack.address) as channel:
        request = backend_pb2.InferRequest(model_id="s/echo", input=C.Input(text="hi"))
        inferred = await backend_pb2_grpc.BackendServiceStub(channel).Infer(request)
        generated = await gateway_pb2_grpc.GatewayServiceStub(channel).Generate(
            gateway_pb2.GenerateRequest(model="s/echo", input=C.Input(text="hi"))
        )
    expected = ("hello world", C.FINISH_REASON_STOP, C.Usage(input_tokens=3, output_tokens=3))
    assert (inferred.text, inferred.finish_reason, inferred.usage) == expected
    assert (generated.text, generated.finish_reason, generated.usage) == expected
    assert generated.model_id == "s/echo"
