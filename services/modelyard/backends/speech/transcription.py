"""One transcription: Whisper's segments, as timed text and as the pieces of a stream.

faster-whisper decodes lazily: each segment is decoded when the iteration
asks for it, so `transcribe_segments` runs in a worker thread and
`backends.threaded_stream.pieces_from_thread` hands each piece to the event loop as it is ready (a
caller that goes away stops the thread at the next segment). A segment keeps
its start and end in the audio: the contract has no field for them yet
(`InferChunk` and `GenerateChunk` carry text only), so the stream sends each
segment's text and the times stay here, ready for that field.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from modelyard.backends.engine import Piece
from modelyard.errors import InvalidRequest
from modelyard.v1 import common_pb2


@dataclass(frozen=True)
class TranscribeOptions:
    """How Whisper decodes: the backend's `beam_size`; the request's temperature when it
    gives one (else faster-whisper's fallback from 0.0 up to 1.0 on a failed window)."""

    beam_size: int = 5
    temperature: float | None = None

    def keywords(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"beam_size": self.beam_size}
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        return kwargs


def transcribe_options(
    params: common_pb2.GenerationParams, beam_size: int, model_id: str
) -> TranscribeOptions:
    """The options of one call; `InvalidRequest` naming a parameter Whisper cannot honour."""
    # Parameters Whisper has no use for: refused, never dropped.
    if params.HasField("top_p"):
        raise _unsupported("params.top_p", model_id)
    if params.HasField("top_k"):
        raise _unsupported("params.top_k", model_id)
    if params.HasField("seed"):
        raise _unsupported("params.seed", model_id)
    if params.stop:
        raise _unsupported("params.stop", model_id)
    if params.response_schema_json:
        raise _unsupported("params.response_schema_json", model_id)
    if params.continue_final_message:
        raise _unsupported("params.continue_final_message", model_id)
    temperature = params.temperature if params.HasField("temperature") else None
    return TranscribeOptions(beam_size=beam_size, temperature=temperature)


def _unsupported(field: str, model_id: str) -> InvalidRequest:
    return InvalidRequest(
        f"{field} is not supported by model '{model_id}' (whisper, speech to text)", field=field
    )


@dataclass(frozen=True)
class TranscriptSegment:
    """One stretch of speech: its text, where it lies in the audio, the tokens decoded
    (Whisper's timestamp tokens included: they are decoded too)."""

    start_s: float
    end_s: float
    text: str
    tokens: tuple[int, ...]


def transcribe_segments(
    model: Any, samples: npt.NDArray[np.float32], options: TranscribeOptions
) -> Iterator[TranscriptSegment]:
    """The segments of `samples` (16 kHz mono) as `model` (a `WhisperModel`) decodes them."""
    segments, _info = model.transcribe(samples, **options.keywords())
    for segment in segments:
        yield TranscriptSegment(segment.start, segment.end, segment.text, tuple(segment.tokens))


def transcript_pieces(
    segments: Iterable[TranscriptSegment],
    max_tokens: int,
    decode: Callable[[tuple[int, ...]], str],
) -> Iterator[Piece]:
    """One piece per segment, then the finish: STOP, or LENGTH when `max_tokens` (0: no
    cap) ran out, the last segment cut to the tokens left (`decode` turns them to text)."""
    used = 0
    first = True
    for segment in segments:
        tokens, text = segment.tokens, segment.text
        cut = bool(max_tokens) and used + len(tokens) > max_tokens
        if cut:
            tokens = tokens[: max_tokens - used]
            text = decode(tokens)
        used += len(tokens)
        if first:  # Whisper starts each segment with a space: the transcript does not
            text = text.lstrip()
        if text:
            first = False
            yield Piece(text)
        if cut or (max_tokens and used >= max_tokens):
            yield Piece("", common_pb2.FINISH_REASON_LENGTH, output_tokens=used)
            return
    yield Piece("", common_pb2.FINISH_REASON_STOP, output_tokens=used)
