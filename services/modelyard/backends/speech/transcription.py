"""One transcription: Whisper's segments, as timed text and as the pieces of a stream.

faster-whisper decodes lazily: each segment is decoded when the iteration
asks for it, so `transcribe_segments` runs in a worker thread and
`backends.threaded_stream.pieces_from_thread` hands each piece to the event loop as it is ready (a
caller that goes away stops the thread at the next segment). Each piece is one
segment: its text, and in `Output.segments` the segment with its start and end
in the audio (seconds from its start). The last piece carries the audio's
duration (`Usage.audio_seconds`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from modelyard.backends.engine import Piece
from modelyard.backends.speech.unsupported_params import dropped_params
from modelyard_client.v1 import common_pb2

# What Whisper has no use for (its temperature it takes); `voice` and `audio_format` are
# text to speech's.
UNSUPPORTED = (
    "top_p",
    "top_k",
    "seed",
    "stop",
    "response_schema_json",
    "continue_final_message",
    "voice",
    "audio_format",
)


@dataclass(frozen=True)
class TranscribeOptions:
    """How Whisper decodes: the backend's `beam_size`; the request's temperature when it
    gives one (else faster-whisper's fallback from 0.0 up to 1.0 on a failed window).
    `dropped`: the request's parameters left out (`unsupported_params`)."""

    beam_size: int = 5
    temperature: float | None = None
    dropped: tuple[str, ...] = ()

    def keywords(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"beam_size": self.beam_size}
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        return kwargs


def transcribe_options(
    params: common_pb2.GenerationParams, beam_size: int, model_id: str
) -> TranscribeOptions:
    """The options of one call; `InvalidRequest` naming a parameter Whisper cannot honour
    (unless the request lets it be dropped)."""
    dropped = dropped_params(params, UNSUPPORTED, model_id, "whisper, speech to text")
    temperature = params.temperature if params.HasField("temperature") else None
    return TranscribeOptions(beam_size=beam_size, temperature=temperature, dropped=dropped)


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
    audio_seconds: float = 0.0,
    dropped: tuple[str, ...] = (),
) -> Iterator[Piece]:
    """One piece per segment, its text and its timed segment in `Output.segments`, then the
    finish: STOP, or LENGTH when `max_tokens` (0: no cap) ran out, the last segment cut to
    the tokens left (`decode` turns them to text; a cut segment keeps its times). The
    finish carries `audio_seconds` (the audio's duration) and the `dropped` parameters."""
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
            timed = common_pb2.TranscriptSegment(
                start_s=segment.start_s, end_s=segment.end_s, text=text
            )
            yield Piece(text, output=common_pb2.Output(segments=[timed]))
        if cut or (max_tokens and used >= max_tokens):
            yield _finish(common_pb2.FINISH_REASON_LENGTH, used, audio_seconds, dropped)
            return
    yield _finish(common_pb2.FINISH_REASON_STOP, used, audio_seconds, dropped)


def _finish(
    reason: common_pb2.FinishReason.ValueType,
    output_tokens: int,
    audio_seconds: float,
    dropped: tuple[str, ...],
) -> Piece:
    return Piece(
        "",
        reason,
        output_tokens=output_tokens,
        audio_seconds=audio_seconds,
        dropped_params=dropped,
    )
