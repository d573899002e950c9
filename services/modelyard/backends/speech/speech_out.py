"""One text to speech call: what is spoken, with which speaker, and the pieces it streams.

`speech_request` checks a request before any voice loads: the text (an
`Input.text`, or the last user message of a chat), ``params.voice`` (a speaker
of the voice), ``params.audio_format`` and the parameters Piper has no use for
(`unsupported_params`). `speech_pieces` turns the voice's audio, one block of
16-bit samples per sentence as Piper synthesises them, into the stream:

- ``wav`` (the default): one WAV file, whole, on the last piece
  (``audio/wav``), since a WAV header states the length of what follows;
- ``pcm``: each sentence's raw signed 16-bit little-endian mono samples on a
  piece of its own as soon as it is made (``audio/pcm``), then the finish.

The last piece has FINISH_REASON_STOP and the usage: `characters` spoken and
`audio_seconds` made (Piper makes no tokens).
"""

from __future__ import annotations

import io
import wave
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from modelyard.backends.engine import Piece
from modelyard.backends.speech.piper_voices import PiperVoiceFiles
from modelyard.backends.speech.unsupported_params import dropped_params
from modelyard_client.errors import ContextLengthExceeded, InvalidRequest
from modelyard_client.v1 import common_pb2

ENGINE = "piper, text to speech"
# Piper draws no tokens: its variation is the voice's noise scales (no temperature, top_p
# or top_k), drawn inside the ONNX model (no seed reaches it), with nothing to stop at or
# shape to a schema. `max_tokens` caps tokens, and Piper makes none: there is nothing for
# it to cut (the gateway always sends one).
UNSUPPORTED = (
    "temperature",
    "top_p",
    "top_k",
    "seed",
    "stop",
    "response_schema_json",
    "continue_final_message",
)
AUDIO_FORMATS = ("wav", "pcm")
WAV_MIME = "audio/wav"
PCM_MIME = "audio/pcm"
SAMPLE_BYTES = 2  # 16-bit mono
# `backends.<name>.max_characters`: the text of one call, about a minute and a half of
# speech (a 4 MB WAV). A WAV comes whole at the end: measured on two busy cores, 2,000
# characters took 11 s to speak, well within the gateway's 30 s first-token deadline
# (10,000 took 65 s, past it); PCM streams, and a longer limit suits it.
DEFAULT_MAX_CHARACTERS = 2_000


@dataclass(frozen=True)
class SpeechRequest:
    """What to speak (`text`, from the input field `field`), with which speaker (`speaker_id`:
    None, the voice's default), as `audio_format`; `dropped`: parameters left out."""

    text: str
    field: str
    speaker_id: int | None
    audio_format: str
    dropped: tuple[str, ...]


def speech_request(
    model_input: common_pb2.Input,
    params: common_pb2.GenerationParams,
    voice: PiperVoiceFiles,
    model_id: str,
    max_characters: int,
) -> SpeechRequest:
    """The call, checked; `InvalidRequest` naming the field of the first problem."""
    text, field = text_to_speak(model_input, model_id)
    if len(text) > max_characters:  # a model with a larger limit may take it: a fallback
        raise ContextLengthExceeded(
            f"{field} has {len(text):,} characters: model '{model_id}' speaks at most "
            f"{max_characters:,} in one call (its backend's max_characters)",
            field=field,
        )
    audio_format = params.audio_format or "wav"
    if audio_format not in AUDIO_FORMATS:
        raise InvalidRequest(
            f"params.audio_format {params.audio_format!r} is not one model '{model_id}' "
            "makes: wav (the default) or pcm",
            field="params.audio_format",
        )
    speaker_id = None
    if params.voice:
        if params.voice not in voice.speakers:
            raise InvalidRequest(
                f"params.voice {params.voice!r} is not a voice of model '{model_id}': "
                f"its voices are {', '.join(voice.speakers)}",
                field="params.voice",
            )
        speaker_id = voice.speakers[params.voice]
    dropped = dropped_params(params, UNSUPPORTED, model_id, ENGINE)
    return SpeechRequest(text, field, speaker_id, audio_format, dropped)


def text_to_speak(model_input: common_pb2.Input, model_id: str) -> tuple[str, str]:
    """The text a call speaks and the field it comes from: `Input.text`, or the last user
    message of a chat (its content, or its text parts joined by spaces), stripped; every
    text to speech engine's rule (Piper's, ElevenLabs'). `InvalidRequest` naming the field
    for other input, a chat without a user message, an image part, or no text."""
    kind = model_input.WhichOneof("kind")
    if kind == "text":
        text, field = model_input.text, "input.text"
    elif kind == "chat":
        text, field = _last_user_text(model_input.chat, model_id)
    else:
        raise InvalidRequest(
            f"model '{model_id}' takes text input (MODALITY_TEXT: text to speech), "
            f"not {kind or 'an empty input'}",
            field="input",
        )
    text = text.strip()
    if not text:
        raise InvalidRequest(f"{field} is empty: model '{model_id}' has nothing to speak", field)
    return text, field


def _last_user_text(chat: common_pb2.ChatMessages, model_id: str) -> tuple[str, str]:
    for i in reversed(range(len(chat.messages))):
        message = chat.messages[i]
        if message.role != "user":
            continue
        field = f"input.chat.messages[{i}]"
        if not message.parts:
            return message.content, f"{field}.content"
        texts = []
        for j, part in enumerate(message.parts):
            if part.WhichOneof("part") != "text":
                raise InvalidRequest(
                    f"{field}.parts[{j}] is an image: model '{model_id}' speaks text only",
                    field=f"{field}.parts[{j}]",
                )
            texts.append(part.text)
        return " ".join(texts), f"{field}.parts"
    raise InvalidRequest(
        f"input.chat has no user message: model '{model_id}' speaks the last one",
        field="input.chat",
    )


def speech_pieces(
    sentences: Iterable[bytes], request: SpeechRequest, sample_rate_hz: int, model_id: str
) -> Iterator[Piece]:
    """The stream of `sentences` (each one's 16-bit mono samples at `sample_rate_hz`, as
    the voice makes them): PCM pieces as they come, or one WAV on the finish. A text
    that makes no sound at all (punctuation only) is refused, `InvalidRequest`."""
    made = 0
    kept: list[bytes] = []
    for samples in sentences:
        if not samples:
            continue
        made += len(samples)
        if request.audio_format == "pcm":
            audio = common_pb2.Audio(
                data=samples, mime_type=PCM_MIME, sample_rate_hz=sample_rate_hz
            )
            yield Piece("", output=common_pb2.Output(audio=audio))
        else:
            kept.append(samples)
    if not made:
        raise InvalidRequest(
            f"{request.field} has nothing model '{model_id}' can speak: "
            f"{_shown(request.text)} makes no sound",
            field=request.field,
        )
    output = None
    if request.audio_format == "wav":
        wav = common_pb2.Audio(
            data=wav_file(kept, sample_rate_hz), mime_type=WAV_MIME, sample_rate_hz=sample_rate_hz
        )
        output = common_pb2.Output(audio=wav)
    yield Piece(
        "",
        common_pb2.FINISH_REASON_STOP,
        output=output,
        characters=len(request.text),
        audio_seconds=made / SAMPLE_BYTES / sample_rate_hz,
        dropped_params=request.dropped,
    )


def wav_file(blocks: Iterable[bytes], sample_rate_hz: int) -> bytes:
    """A mono 16-bit WAV of `blocks` (little-endian samples, as WAV holds them)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(SAMPLE_BYTES)
        wav.setframerate(sample_rate_hz)
        for block in blocks:
            wav.writeframes(block)
    return buffer.getvalue()


def _shown(text: str) -> str:
    return repr(text) if len(text) <= 40 else repr(text[:40]) + "…"
