"""Text to speech on the OpenAI wire: ``POST <base_url>/audio/speech``, the audio streamed.

The reference followed: OpenAI's API reference, "Create speech", as the
openai-python SDK generates it from OpenAI's OpenAPI spec
(``src/openai/types/audio/speech_create_params.py``) and as the docs.rs
``openai-client-base`` 0.12.0 ``CreateSpeechRequest`` (OpenAPI document
2.3.0) states it, read 2026-12-02. The body: ``model``, ``input`` (at most
4,096 characters), ``voice`` (required: a built-in voice such as ``alloy``,
``ash``, ``coral``, ``echo``, ``nova``... or a custom voice's id; there is no
default), ``response_format`` (``mp3``, the default, ``opus``, ``aac``,
``flac``, ``wav``, ``pcm``), ``speed`` (0.25 to 4.0) and, not for tts-1,
``instructions``. The answer's body is the audio itself; ``pcm`` is raw
signed 16-bit little-endian mono samples at 24 kHz (the text to speech
guide's "Supported output formats").

What modelyard's request says, and how it maps:

- the text: `Input.text`, or the last user message of a chat (every speech
  engine's rule, `speech_out.text_to_speak`); over 4,096 characters is
  `ContextLengthExceeded` naming the field, before anything is sent;
- ``params.voice``: sent as ``voice``; required (`InvalidRequest` naming it);
- ``params.audio_format``: ``""``/``"wav"`` asks for ``pcm`` and sends one
  WAV file, whole, on the last piece (``audio/wav``, 24 kHz, a header that
  states its true length: `speech_out.wav_file`); ``"pcm"`` streams the
  samples as they arrive (``audio/pcm``, 24,000 Hz, each piece a whole number
  of samples); ``"mp3"`` streams the MP3 as it arrives (``audio/mpeg``);
  anything else is refused naming ``params.audio_format``;
- ``params.max_tokens`` is ignored (speech makes no tokens; the gateway
  always sends one); sampling parameters, ``stop``, ``response_schema_json``,
  tools and ``continue_final_message`` have no counterpart: refused naming
  the parameter, or dropped and listed (`speech.unsupported_params`).

The last piece has FINISH_REASON_STOP and the usage: `characters` spoken and,
for PCM and WAV, the `audio_seconds` made (an MP3's length is not counted here).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import aiohttp

from modelyard.backends.engine import Piece
from modelyard.backends.openai_compat.media import MediaCall
from modelyard.backends.openai_compat.upstream import describe
from modelyard.backends.speech.speech_out import PCM_MIME, WAV_MIME, text_to_speak, wav_file
from modelyard.backends.speech.unsupported_params import dropped_params
from modelyard_client.errors import (
    BackendUnavailable,
    ContextLengthExceeded,
    InvalidRequest,
    StreamTruncated,
)
from modelyard_client.v1 import common_pb2

ENGINE = "OpenAI text to speech"
UNSUPPORTED = (
    "temperature",
    "top_p",
    "top_k",
    "seed",
    "stop",
    "response_schema_json",
    "continue_final_message",
    "tools",
    "tool_choice",
)
MAX_CHARACTERS = 4_096  # the reference's limit on ``input``
PCM_RATE_HZ = 24_000  # OpenAI's pcm: 24 kHz, 16-bit signed little-endian, mono
SAMPLE_BYTES = 2
MP3_MIME = "audio/mpeg"
WAV, PCM, MP3 = "wav", "pcm", "mp3"
AUDIO_FORMATS = (WAV, PCM, MP3)


@dataclass(frozen=True)
class SpeechCall:
    """What one call sends (`body`) and how its audio is delivered (`audio_format`)."""

    body: dict[str, Any]
    audio_format: str
    dropped: tuple[str, ...]

    @property
    def characters(self) -> int:
        return len(self.body["input"])


def speech_call(
    name: str, model_id: str, model_input: common_pb2.Input, params: common_pb2.GenerationParams
) -> SpeechCall:
    """The call of `model_id` (upstream model `name`), checked: `InvalidRequest` (or
    `ContextLengthExceeded`) naming the field of the first problem."""
    text, field = text_to_speak(model_input, model_id)
    if len(text) > MAX_CHARACTERS:
        raise ContextLengthExceeded(
            f"{field} has {len(text):,} characters: OpenAI model {name} speaks at most "
            f"{MAX_CHARACTERS:,} in one request",
            field=field,
        )
    if not params.voice:
        raise InvalidRequest(
            f"params.voice: OpenAI model {name} needs a voice (alloy, ash, coral, echo, "
            "nova, sage, shimmer... or a custom voice's id); it has no default",
            field="params.voice",
        )
    audio_format = params.audio_format or WAV
    if audio_format not in AUDIO_FORMATS:
        raise InvalidRequest(
            f"params.audio_format {params.audio_format!r} is not one model '{model_id}' "
            f"makes here: {', '.join(AUDIO_FORMATS)} (wav the default)",
            field="params.audio_format",
        )
    dropped = dropped_params(params, UNSUPPORTED, model_id, ENGINE)
    body = {
        "model": name,
        "input": text,
        "voice": params.voice,
        "response_format": MP3 if audio_format == MP3 else PCM,
    }
    return SpeechCall(body, audio_format, dropped)


def speech_pieces(
    call: MediaCall, model_input: common_pb2.Input, params: common_pb2.GenerationParams
) -> AsyncGenerator[Piece, None]:
    """One speech call, its request checked now (before a slot is taken)."""
    return _speak(call, speech_call(call.name, call.model_id, model_input, params))


async def _speak(call: MediaCall, speech: SpeechCall) -> AsyncGenerator[Piece, None]:
    """PCM or MP3 pieces as the audio arrives, or one WAV at the end."""
    kept: list[bytes] = []  # the WAV's samples, or nothing when streamed
    made = 0  # audio bytes received
    carry = b""  # half a sample, held for the next piece
    async with call.post("/audio/speech", json=speech.body) as resp:
        try:
            async for block in resp.content.iter_any():
                made += len(block)
                if speech.audio_format == WAV:
                    kept.append(block)
                    continue
                if speech.audio_format == PCM:
                    block, carry = _whole_samples(carry + block)
                if block:
                    yield Piece("", output=common_pb2.Output(audio=_audio(block, speech)))
        except (aiohttp.ClientError, TimeoutError) as exc:
            if made and speech.audio_format != WAV:  # the caller holds part of the audio
                raise StreamTruncated(
                    f"{call.where} broke off the audio for '{call.model_id}' "
                    f"({describe(exc)}): the speech is truncated"
                ) from exc
            raise BackendUnavailable(
                f"{call.where} broke off the audio for '{call.model_id}' ({describe(exc)})"
            ) from exc
    if not made:
        raise BackendUnavailable(f"{call.where} answered '{call.model_id}' with no audio")
    output = None
    if speech.audio_format == WAV:
        samples = b"".join(kept)
        samples = samples[: len(samples) - len(samples) % SAMPLE_BYTES]
        wav = common_pb2.Audio(
            data=wav_file([samples], PCM_RATE_HZ), mime_type=WAV_MIME, sample_rate_hz=PCM_RATE_HZ
        )
        output = common_pb2.Output(audio=wav)
    seconds = 0.0 if speech.audio_format == MP3 else made // SAMPLE_BYTES / PCM_RATE_HZ
    yield Piece(
        "",
        common_pb2.FINISH_REASON_STOP,
        output=output,
        characters=speech.characters,
        audio_seconds=seconds,
        dropped_params=speech.dropped,
    )


def _whole_samples(data: bytes) -> tuple[bytes, bytes]:
    """`data` cut at a sample boundary, and the byte left over."""
    cut = len(data) - len(data) % SAMPLE_BYTES
    return data[:cut], data[cut:]


def _audio(block: bytes, speech: SpeechCall) -> common_pb2.Audio:
    if speech.audio_format == PCM:
        return common_pb2.Audio(data=block, mime_type=PCM_MIME, sample_rate_hz=PCM_RATE_HZ)
    return common_pb2.Audio(data=block, mime_type=MP3_MIME)
