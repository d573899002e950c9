"""A streamed answer: each `Piece` as its wire chunk, and a whole stream read into one answer.

Every stream ends with the piece (or chunk) that carries the finish reason and
the usage. The backend service streams `piece_to_chunk` chunks and answers its
unary `Infer` with `whole_answer`; the gateway converts the pieces of a backend
in its own process with `piece_to_chunk` too, and answers `Generate` with
`whole_answer` over its chunk stream.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from modelyard.backends.engine import Piece
from modelyard.v1 import backend_pb2, common_pb2


def piece_to_chunk(piece: Piece) -> backend_pb2.InferChunk:
    """The wire form of a piece: usage and tool calls only on the last one, the one with a
    finish reason."""
    if piece.finish_reason == common_pb2.FINISH_REASON_UNSPECIFIED:
        return backend_pb2.InferChunk(text=piece.text)
    return backend_pb2.InferChunk(
        text=piece.text,
        finish_reason=piece.finish_reason,
        usage=common_pb2.Usage(input_tokens=piece.input_tokens, output_tokens=piece.output_tokens),
        tool_calls=piece.tool_calls,
    )


class _HasText(Protocol):
    @property
    def text(self) -> str: ...


T = TypeVar("T", bound=_HasText)


@dataclass(frozen=True)
class WholeAnswer(Generic[T]):
    """A streamed answer read to its end."""

    text: str  # every item's text, in order
    first: T  # the gateway's first chunk names the model
    last: T  # carries the finish reason and usage


async def whole_answer(stream: AsyncGenerator[T, None], empty: T) -> WholeAnswer[T]:
    """Read `stream` to its end (closing it if reading fails); `empty` stands in for no items."""
    texts: list[str] = []
    first: T | None = None
    last = empty
    async with aclosing(stream):
        async for item in stream:
            if first is None:
                first = item
            texts.append(item.text)
            last = item
    return WholeAnswer("".join(texts), empty if first is None else first, last)
