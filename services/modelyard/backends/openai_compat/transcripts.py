"""Transcription on the OpenAI wire: ``POST <base_url>/audio/transcriptions``, multipart.

The reference followed: OpenAI's API reference, "Create transcription", as
the openai-python SDK generates it from OpenAI's OpenAPI spec
(``src/openai/types/audio/transcription_create_params.py``,
``transcription_verbose.py``, ``transcription_diarized.py``'s usage types),
read 2026-12-02. A ``multipart/form-data`` body: ``file`` (the audio, one of
flac, mp3, mp4, mpeg, mpga, m4a, ogg, wav, webm; uploads are capped at 25 MB),
``model``, ``response_format`` and, with ``verbose_json`` only,
``timestamp_granularities[]`` (``segment``, ``word``); ``temperature`` from 0
to 1. "For gpt-4o-transcribe and gpt-4o-mini-transcribe, the only supported
format is json": those models are asked for ``json``, and answer
``{"text", "usage": {"type": "tokens", "input_tokens", "output_tokens", ...}}``
(or ``{"type": "duration", "seconds"}``); whisper models are asked for
``verbose_json`` with segment timestamps and answer ``{"task", "language",
"duration", "text", "segments": [{"id", "start", "end", "text", ...}]}``.

What modelyard's request says, and how it maps:

- `Input.audio`, its type from ``mime_type`` (or, when none is given, from
  the bytes' magic numbers), sent as a file named ``audio.<ext>``; anything
  else, an empty file, an unknown type or one over 25 MB is refused naming
  the field, before anything is sent;
- one piece per segment, its text and in `Output.segments` its start and
  end (seconds into the audio; the first segment's leading space dropped),
  or one piece with the whole text for a model that gives no segments; the
  last piece carries `Usage.audio_seconds` (``duration``, or the usage's
  ``seconds``) or the usage's tokens;
- ``params.temperature``: sent (refused above 1, the reference's range);
  ``params.max_tokens`` is ignored (the endpoint takes no cap; the gateway
  always sends one); ``top_p``, ``top_k``, ``seed``, ``stop``,
  ``response_schema_json``, ``voice``, ``audio_format``, tools and
  ``continue_final_message``: refused naming them, or dropped and listed.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, TypeGuard

import aiohttp

from modelyard.backends.engine import Piece
from modelyard.backends.openai_compat.media import MediaCall, token_count, usage_of
from modelyard.backends.openai_compat.upstream import describe
from modelyard.backends.speech.unsupported_params import dropped_params
from modelyard_client.errors import BackendUnavailable, InvalidRequest, ProviderProtocolError
from modelyard_client.v1 import common_pb2

ENGINE = "OpenAI speech to text"
UNSUPPORTED = (
    "top_p",
    "top_k",
    "seed",
    "stop",
    "response_schema_json",
    "continue_final_message",
    "tools",
    "tool_choice",
    "voice",
    "audio_format",
)
MAX_FILE_BYTES = 25 * 1024 * 1024  # the reference's upload limit
# A declared type and the file extension OpenAI reads it by.
EXTENSIONS = {
    "audio/wav": "wav",
    "audio/wave": "wav",
    "audio/x-wav": "wav",
    "audio/vnd.wave": "wav",
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
    "audio/flac": "flac",
    "audio/x-flac": "flac",
    "audio/ogg": "ogg",
    "audio/webm": "webm",
    "audio/mp4": "m4a",
    "audio/m4a": "m4a",
    "audio/x-m4a": "m4a",
    "video/mp4": "mp4",
    "video/webm": "webm",
}
MIME_OF = {"wav": "audio/wav", "mp3": "audio/mpeg", "flac": "audio/flac", "ogg": "audio/ogg"}


def sniff_audio(data: bytes) -> str | None:
    """The extension a file's magic numbers say (WAV, MP3, FLAC, Ogg, WebM, MP4), or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "wav"
    if data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):
        return "mp3"
    if data[:4] == b"fLaC":
        return "flac"
    if data[:4] == b"OggS":
        return "ogg"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    if data[4:8] == b"ftyp":
        return "m4a"
    return None


def audio_file(model_input: common_pb2.Input, model_id: str) -> tuple[str, str, bytes]:
    """The file to upload: its name, type and bytes; `InvalidRequest` naming the field."""
    kind = model_input.WhichOneof("kind")
    if kind != "audio":
        raise InvalidRequest(
            f"model '{model_id}' transcribes audio (MODALITY_AUDIO), "
            f"not {kind or 'an empty input'}",
            field="input",
        )
    audio = model_input.audio
    if not audio.data:
        raise InvalidRequest(
            f"input.audio.data is empty: model '{model_id}' has nothing to transcribe",
            field="input.audio.data",
        )
    if len(audio.data) > MAX_FILE_BYTES:
        raise InvalidRequest(
            f"input.audio.data is {len(audio.data):,} bytes: OpenAI takes files of at most "
            f"{MAX_FILE_BYTES:,} (25 MB)",
            field="input.audio.data",
        )
    mime = audio.mime_type.split(";")[0].strip().lower()
    extension = EXTENSIONS.get(mime) if mime else sniff_audio(audio.data)
    if extension is None:
        said = f"input.audio.mime_type {audio.mime_type!r}" if mime else "input.audio.data"
        raise InvalidRequest(
            f"{said}: model '{model_id}' takes flac, mp3, mp4, m4a, ogg, wav or webm audio",
            field="input.audio.mime_type" if mime else "input.audio.data",
        )
    return f"audio.{extension}", mime or MIME_OF.get(extension, "audio/mp4"), audio.data


def verbose(name: str) -> bool:
    """Whether the model answers verbose_json (whisper does; gpt-4o transcribers json only)."""
    return "whisper" in name.lower()


def transcription_form(
    name: str, filename: str, mime: str, data: bytes, params: common_pb2.GenerationParams
) -> aiohttp.FormData:
    """The multipart body: file, model, response_format, segment timestamps, temperature."""
    form = aiohttp.FormData()
    form.add_field("file", data, filename=filename, content_type=mime)
    form.add_field("model", name)
    if verbose(name):
        form.add_field("response_format", "verbose_json")
        form.add_field("timestamp_granularities[]", "segment")
    else:
        form.add_field("response_format", "json")
    if params.HasField("temperature"):
        # A float32 on the wire: its shortest decimal, not 0.20000000298023224.
        form.add_field("temperature", f"{params.temperature:.6g}")
    return form


def transcript_pieces(
    call: MediaCall, model_input: common_pb2.Input, params: common_pb2.GenerationParams
) -> AsyncGenerator[Piece, None]:
    """One transcription, its request checked now (before a slot is taken): a piece per
    segment (or the whole text), then the finish."""
    filename, mime, data = audio_file(model_input, call.model_id)
    if params.HasField("temperature") and params.temperature > 1:
        raise InvalidRequest(
            f"params.temperature {params.temperature:g}: OpenAI transcription takes 0 to 1",
            field="params.temperature",
        )
    dropped = dropped_params(params, UNSUPPORTED, call.model_id, ENGINE)
    form = transcription_form(call.name, filename, mime, data, params)
    return _transcribe(call, form, dropped)


async def _transcribe(
    call: MediaCall, form: aiohttp.FormData, dropped: tuple[str, ...]
) -> AsyncGenerator[Piece, None]:
    body = form()  # the multipart payload, its boundary in its content type
    async with call.post("/audio/transcriptions", body.content_type, data=body) as resp:
        try:
            answer = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as exc:  # nothing was delivered yet
            raise BackendUnavailable(
                f"{call.where} broke off its transcript of '{call.model_id}' ({describe(exc)})"
            ) from exc
        except ValueError as exc:
            raise ProviderProtocolError(
                f"{call.where} answered the transcript of '{call.model_id}' with a body that "
                "is not JSON"
            ) from exc
    for piece in read_transcript(answer, call, dropped):
        yield piece


def read_transcript(answer: Any, call: MediaCall, dropped: tuple[str, ...]) -> list[Piece]:
    """The pieces of a transcription answer; `ProviderProtocolError` for one without text."""

    def wrong(problem: str) -> ProviderProtocolError:
        return ProviderProtocolError(
            f"{call.where} answered the transcript of '{call.model_id}' with {problem}"
        )

    if not isinstance(answer, dict) or not isinstance(answer.get("text"), str):
        raise wrong("no text")
    pieces: list[Piece] = []
    segments = answer.get("segments")
    if isinstance(segments, list) and segments:
        for i, segment in enumerate(segments):
            if not isinstance(segment, dict):
                raise wrong(f"segments[{i}] not a segment object")
            start, end, text = segment.get("start"), segment.get("end"), segment.get("text")
            if not (_number(start) and _number(end) and isinstance(text, str)):
                raise wrong(f"segments[{i}] without a start, an end and a text")
            text = text.lstrip() if not pieces else text
            if not text:
                continue
            timed = common_pb2.TranscriptSegment(start_s=float(start), end_s=float(end), text=text)
            pieces.append(Piece(text, output=common_pb2.Output(segments=[timed])))
    elif answer["text"]:
        pieces.append(Piece(answer["text"]))
    usage = usage_of(answer)
    seconds = answer.get("duration")
    if not _number(seconds):
        seconds = usage.get("seconds") if usage.get("type") == "duration" else None
    pieces.append(
        Piece(
            "",
            common_pb2.FINISH_REASON_STOP,
            input_tokens=token_count(usage.get("input_tokens")),
            output_tokens=token_count(usage.get("output_tokens")),
            audio_seconds=float(seconds) if _number(seconds) else 0.0,
            dropped_params=dropped,
        )
    )
    return pieces


def _number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
