"""One speech request: what to speak, in which voice and format, and what ElevenLabs cannot take.

The request follows ElevenLabs' API reference for Stream speech
(https://elevenlabs.io/docs/api-reference/text-to-speech/stream, OpenAPI
``endpoint_textToSpeech.stream``, read 2026-12-02): ``POST
/v1/text-to-speech/{voice_id}/stream?output_format=...`` with the body
``{"text", "model_id", "seed"?}``; ``seed`` is an integer from 0 to
4294967295 ("best effort" determinism).

What modelyard's request says, and how it maps:

- the text: `Input.text`, or the last ``user`` message of a chat (its
  ``content``, or its text parts joined), as every speech engine takes it
  (`speech_out.text_to_speak`); empty text is refused, as is text over the
  model's character limit when the catalog states one;
- ``params.voice``: the voice id, required (ElevenLabs has no default voice
  and the backend's configuration has no place for one);
- ``params.audio_format``: ``""``/``"wav"`` asks for ``pcm_24000`` and sends
  one WAV file on the last piece; ``"pcm"`` asks for ``pcm_24000`` and streams
  it; ``"mp3"`` asks for ``mp3_44100_128`` (the API's default; 192 kbps needs
  a paid tier, 44.1 kHz PCM the Pro tier) and streams it; anything else is
  refused naming ``params.audio_format``;
- ``params.seed``: sent as ``seed`` (refused outside 0..4294967295);
- ``params.max_tokens``: ignored. Speech has no token budget, and the gateway
  and clients send one by default; refusing it would refuse every call.
- ``params.temperature``, ``top_p``, ``top_k``, ``stop``,
  ``response_schema_json`` and ``continue_final_message`` have no
  counterpart (ElevenLabs' ``voice_settings.stability`` is not a sampling
  temperature): `InvalidRequest` naming the parameter and ElevenLabs, or,
  with ``params.drop_unsupported_params``, left out and listed in the last
  piece's ``dropped_params`` (`speech.unsupported_params`, the speech
  engines' one rule). Tools never reach here: the gateway refuses them to a
  model without CAPABILITY_TOOLS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelyard.backends.speech.speech_out import text_to_speak
from modelyard.backends.speech.unsupported_params import dropped_params
from modelyard_client.errors import ContextLengthExceeded, InvalidRequest
from modelyard_client.v1 import common_pb2

PROVIDER = "ElevenLabs"
ENGINE = "ElevenLabs, text to speech"  # what the model is, in a refusal
# No counterpart in Stream speech (`voice_settings.stability` is no sampling temperature);
# `seed` has one. `max_tokens` caps tokens, and speech makes none: it is ignored.
UNSUPPORTED = (
    "temperature",
    "top_p",
    "top_k",
    "stop",
    "response_schema_json",
    "continue_final_message",
)
PCM_RATE_HZ = 24_000  # every tier may ask for it (the reference: 44.1 kHz needs Pro)
MP3_FORMAT = "mp3_44100_128"  # the API's default output format
MP3_RATE_HZ = 44_100
MAX_SEED = 4_294_967_295
WAV, PCM, MP3 = "wav", "pcm", "mp3"
AUDIO_FORMATS = (WAV, PCM, MP3)


@dataclass(frozen=True)
class SpeechRequest:
    """What one call sends, and how its answer is to be delivered."""

    voice: str
    audio_format: str  # WAV, PCM or MP3
    body: dict[str, Any]
    dropped: tuple[str, ...]  # GenerationParams field names left out

    @property
    def text(self) -> str:
        return str(self.body["text"])

    @property
    def output_format(self) -> str:
        """ElevenLabs' ``output_format`` query parameter."""
        return MP3_FORMAT if self.audio_format == MP3 else f"pcm_{PCM_RATE_HZ}"

    @property
    def sample_rate_hz(self) -> int:
        return MP3_RATE_HZ if self.audio_format == MP3 else PCM_RATE_HZ


def speech_request(
    name: str,
    model_id: str,
    model_input: common_pb2.Input,
    params: common_pb2.GenerationParams,
    max_characters: int = 0,
) -> SpeechRequest:
    """The call of `model_id` (upstream model `name`; `max_characters`: its text limit, 0
    unknown); `InvalidRequest` for what ElevenLabs cannot take, before anything is sent."""
    text, field = text_to_speak(model_input, model_id)
    if max_characters and len(text) > max_characters:
        raise ContextLengthExceeded(
            f"{field} has {len(text):,} characters: {PROVIDER} model {name} speaks at most "
            f"{max_characters:,} in one request",
            field=field,
        )
    if not params.voice:
        raise InvalidRequest(
            f"params.voice: {PROVIDER} needs a voice id (GET /v1/voices lists them); "
            "it has no default voice",
            field="params.voice",
        )
    audio_format = params.audio_format or WAV
    if audio_format not in AUDIO_FORMATS:
        raise InvalidRequest(
            f"params.audio_format {params.audio_format!r} is not one {PROVIDER} makes: "
            f"{', '.join(AUDIO_FORMATS)}",
            field="params.audio_format",
        )
    body: dict[str, Any] = {"text": text, "model_id": name}
    if params.HasField("seed"):
        if not 0 <= params.seed <= MAX_SEED:
            raise InvalidRequest(
                f"params.seed: {PROVIDER} takes a seed from 0 to {MAX_SEED}, not {params.seed}",
                field="params.seed",
            )
        body["seed"] = params.seed
    dropped = dropped_params(params, UNSUPPORTED, model_id, ENGINE)
    return SpeechRequest(params.voice, audio_format, body, dropped)
