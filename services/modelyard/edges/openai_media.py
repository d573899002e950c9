"""The OpenAI HTTP API's image, speech and transcription requests, to and from the contract.

As the OpenAI API reference has them (openai-openapi, 2025): ``POST
/v1/images/generations`` (a prompt; the images come back as ``b64_json``),
``POST /v1/audio/speech`` (text in, the audio bytes back in the body) and ``POST
/v1/audio/transcriptions`` (a multipart upload; ``json``, ``text`` or
``verbose_json`` with segments). Each becomes a `GenerateRequest` whose answer
carries `Output` (images, audio, segments); any model in the catalog that makes
that output serves it. A field the gateway cannot honour is refused naming it.
"""

from __future__ import annotations

import base64
import time
from typing import Any

from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import common_pb2, gateway_pb2

# OpenAI's response formats the contract's audio_format carries; the rest are refused.
SPEECH_FORMATS = ("mp3", "wav", "pcm")
TRANSCRIPT_FORMATS = ("json", "text", "verbose_json")


def _bad(path: str, problem: str) -> InvalidRequest:
    return InvalidRequest(f"{path}: {problem}", field=path)


def _known(body: dict[str, Any], allowed: set[str]) -> None:
    for name in body:
        if name not in allowed:
            raise _bad(name, f"Unrecognized request argument supplied: {name}")


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("model", "must be a non-empty string")
    return model


def image_request(body: dict[str, Any]) -> gateway_pb2.GenerateRequest:
    _known(body, {"model", "prompt", "n", "size", "response_format", "quality", "style", "user"})
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise _bad("prompt", "must be a non-empty string")
    if body.get("n") not in (None, 1):
        raise _bad("n", "this gateway makes one image a request (leave n unset or 1)")
    if body.get("response_format") not in (None, "b64_json"):
        raise _bad("response_format", "only b64_json: this gateway hosts no image URLs")
    for name, neutral in (("size", ("auto",)), ("quality", ("auto",)), ("style", ())):
        if body.get(name) is not None and body[name] not in neutral:
            raise _bad(name, "this gateway does not pass it on yet (leave it unset)")
    request = gateway_pb2.GenerateRequest(model=_model(body))
    request.input.text = prompt
    if isinstance(body.get("user"), str):
        request.user = body["user"]
    return request


def images_json(answer: gateway_pb2.GenerateResponse) -> dict[str, Any]:
    return {
        "created": int(time.time()),
        "data": [
            {"b64_json": base64.b64encode(image.data).decode("ascii")}
            for image in answer.output.images
        ],
        "usage": {
            "input_tokens": answer.usage.input_tokens,
            "output_tokens": answer.usage.output_tokens,
            "total_tokens": answer.usage.input_tokens + answer.usage.output_tokens,
        },
    }


def speech_request(body: dict[str, Any]) -> gateway_pb2.GenerateRequest:
    _known(body, {"model", "input", "voice", "response_format", "speed", "instructions"})
    text = body.get("input")
    if not isinstance(text, str) or not text:
        raise _bad("input", "must be a non-empty string")
    voice = body.get("voice")
    if not isinstance(voice, str) or not voice:
        raise _bad("voice", "must be a non-empty string")
    audio_format = body.get("response_format") or "mp3"
    if audio_format not in SPEECH_FORMATS:
        raise _bad("response_format", f"must be one of {', '.join(SPEECH_FORMATS)} here")
    if body.get("speed") not in (None, 1, 1.0):
        raise _bad("speed", "this gateway does not pass it on yet (leave it unset)")
    if body.get("instructions"):
        raise _bad("instructions", "this gateway does not pass it on yet (leave it unset)")
    request = gateway_pb2.GenerateRequest(model=_model(body))
    request.input.text = text
    request.params.voice = voice
    request.params.audio_format = audio_format
    return request


MIME_OF_FORMAT = {"mp3": "audio/mpeg", "wav": "audio/wav", "pcm": "audio/pcm"}


def transcription_request(
    fields: dict[str, str], audio: bytes, mime_type: str
) -> tuple[gateway_pb2.GenerateRequest, str]:
    """(the request, its response_format) of a multipart transcription's fields and file."""
    allowed = {"model", "response_format", "temperature", "timestamp_granularities[]"}
    allowed |= {"language", "prompt"}
    _known(fields, allowed)
    if not audio:
        raise _bad("file", "an audio file is required")
    response_format = fields.get("response_format") or "json"
    if response_format not in TRANSCRIPT_FORMATS:
        raise _bad("response_format", f"must be one of {', '.join(TRANSCRIPT_FORMATS)} here")
    for name in ("language", "prompt"):
        if fields.get(name):
            raise _bad(name, "this gateway does not pass it on yet (leave it unset)")
    request = gateway_pb2.GenerateRequest(model=_model(dict(fields)))
    request.input.audio.CopyFrom(common_pb2.Audio(data=audio, mime_type=mime_type))
    if fields.get("temperature"):
        try:
            request.params.temperature = float(fields["temperature"])
        except ValueError:
            raise _bad("temperature", "must be a number") from None
    return request, response_format


def transcript_json(answer: gateway_pb2.GenerateResponse, response_format: str) -> dict[str, Any]:
    if response_format == "json":
        return {"text": answer.text}
    return {
        "task": "transcribe",
        "duration": answer.usage.audio_seconds,
        "text": answer.text,
        "segments": [
            {"id": i, "start": s.start_s, "end": s.end_s, "text": s.text}
            for i, s in enumerate(answer.output.segments)
        ],
    }
