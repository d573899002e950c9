"""Requests and a stream reader the cohere engine's tests share."""

from __future__ import annotations

from modelyard.backends.cohere.engine import CohereEngine
from modelyard.backends.engine import Piece
from modelyard_client.v1 import common_pb2

MODEL = "cohere/command-a-03-2025"  # the catalog id of the fake's model
KEY = "co-test-key"  # the key the fake accepts


def text_input(text: str = "Name three rivers.") -> common_pb2.Input:
    return common_pb2.Input(text=text)


async def collect(
    engine: CohereEngine,
    model_input: common_pb2.Input | None = None,
    params: common_pb2.GenerationParams | None = None,
    pieces: list[Piece] | None = None,
) -> list[Piece]:
    """Every piece of one call; `pieces` gets them as they come, for a call that raises."""
    out = pieces if pieces is not None else []
    stream = engine.infer_stream(
        MODEL, model_input or text_input(), params or common_pb2.GenerationParams(max_tokens=16)
    )
    async for piece in stream:
        out.append(piece)
    return out
