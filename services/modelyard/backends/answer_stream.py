"""A streamed answer: each `Piece` as its wire chunk, and a whole stream read into one answer.

Every stream ends with the piece (or chunk) that carries the finish reason and
the usage. The backend service streams `piece_to_chunk` chunks and answers its
unary `Infer` with `whole_answer`; the gateway converts the pieces of a backend
in its own process with `piece_to_chunk` too, and answers `Generate` with
`whole_answer` over its chunk stream.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from modelyard.backends.engine import Piece
from modelyard_client.v1 import backend_pb2, common_pb2, gateway_pb2


def piece_to_chunk(piece: Piece) -> backend_pb2.InferChunk:
    """The wire form of a piece: usage, tool calls and dropped parameters only on the last
    one, the one with a finish reason; its output on any."""
    if piece.finish_reason == common_pb2.FINISH_REASON_UNSPECIFIED:
        if piece.output is None:
            return backend_pb2.InferChunk(text=piece.text)
        return backend_pb2.InferChunk(text=piece.text, output=piece.output)
    return backend_pb2.InferChunk(
        text=piece.text,
        finish_reason=piece.finish_reason,
        usage=piece.usage(),
        tool_calls=piece.tool_calls,
        output=piece.output,
        dropped_params=piece.dropped_params,
    )


class OutputGatherer:
    """A streamed answer's output parts made whole: audio bytes joined (its format and
    rate from the first part naming them), segments, images and tensors in order."""

    def __init__(self) -> None:
        self._audio: list[bytes] = []
        self._whole: common_pb2.Output | None = None

    def add(self, part: common_pb2.Output) -> None:
        whole = self._whole
        if whole is None:
            whole = self._whole = common_pb2.Output()
        if part.HasField("audio"):
            self._audio.append(part.audio.data)
            if not whole.audio.mime_type and part.audio.mime_type:
                whole.audio.mime_type = part.audio.mime_type
            if not whole.audio.sample_rate_hz and part.audio.sample_rate_hz:
                whole.audio.sample_rate_hz = part.audio.sample_rate_hz
        whole.segments.extend(part.segments)
        whole.images.extend(part.images)
        whole.tensors.tensors.extend(part.tensors.tensors)

    def whole(self) -> common_pb2.Output | None:
        """The output gathered; None when no part came."""
        if self._whole is not None and self._audio:
            self._whole.audio.data = b"".join(self._audio)
        return self._whole


class _HasText(Protocol):
    @property
    def text(self) -> str: ...


def chunk_output(
    chunk: backend_pb2.InferChunk | gateway_pb2.GenerateChunk | Piece,
) -> common_pb2.Output | None:
    """A piece's or chunk's part of the output, None when it has none."""
    if isinstance(chunk, Piece):
        return chunk.output
    return chunk.output if chunk.HasField("output") else None


T = TypeVar("T", bound=_HasText)


@dataclass(frozen=True)
class WholeAnswer(Generic[T]):
    """A streamed answer read to its end."""

    text: str  # every item's text, in order
    first: T  # the gateway's first chunk names the model
    last: T  # carries the finish reason and usage
    output: common_pb2.Output | None  # every item's output part, made whole (None: none)


async def whole_answer(
    stream: AsyncGenerator[T, None],
    empty: T,
    output_of: Callable[[T], common_pb2.Output | None] | None = None,
    seen: Callable[[T], None] | None = None,
) -> WholeAnswer[T]:
    """Read `stream` to its end (closing it if reading fails); `empty` stands in for no items.
    `output_of`: an item's part of the output (`chunk_output`), gathered whole; `seen`
    is shown each item as it is read (a measure, with no generator layer of its own)."""
    texts: list[str] = []
    first: T | None = None
    last = empty
    gathered = OutputGatherer()
    async with aclosing(stream):
        async for item in stream:
            if seen is not None:
                seen(item)
            if first is None:
                first = item
            texts.append(item.text)
            if output_of is not None and (part := output_of(item)) is not None:
                gathered.add(part)
            last = item
    return WholeAnswer("".join(texts), empty if first is None else first, last, gathered.whole())
