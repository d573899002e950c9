"""A fake of OpenAI's media endpoints: image generation, text to speech, transcription.

It follows OpenAI's API reference as the openai-python SDK generates it from
OpenAI's OpenAPI spec (``src/openai/types/image_generate_params.py``,
``images_response.py``, ``audio/speech_create_params.py``,
``audio/transcription_create_params.py``, ``audio/transcription_verbose.py``;
read 2026-12-02), and OpenAI's error codes guide for failures
(https://platform.openai.com/docs/guides/error-codes): the body
``{"error": {"message", "type", "param", "code"}}``, ``retry-after`` on a 429
when the server says when to come back.

- ``POST /v1/images/generations`` (JSON): ``prompt`` required; ``n`` 1 to 10,
  1 only for dall-e-3; ``response_format`` refused for gpt-image models ("Unknown
  parameter"), ``url`` (the dall-e default) answered with a URL; the answer
  ``{"created", "data": [{"b64_json", "revised_prompt"?}], "usage"?}`` (usage for
  gpt-image only) holding a real 1x1 PNG;
- ``POST /v1/audio/speech`` (JSON): ``model``, ``input`` (at most 4,096
  characters), ``voice`` required, ``response_format`` one of mp3, opus, aac,
  flac, wav, pcm (default mp3); the answer is the audio, streamed (chunked) in
  `chunk_bytes` pieces (odd, so a 16-bit sample falls across two reads) with a
  pause between them: pcm a 24 kHz 16-bit tone, 50 ms per character; mp3
  MPEG-frame-shaped bytes;
- ``POST /v1/audio/transcriptions`` (multipart): ``file`` and ``model``
  required; ``response_format`` ``json`` only for gpt-4o transcribers;
  ``timestamp_granularities[]`` only with ``verbose_json``; ``temperature`` 0
  to 1; verbose_json answers ``{"task", "language", "duration", "text",
  "segments"}``, json ``{"text", "usage": {"type": "tokens", ...}}``.

A test scripts failures (`fail`, `drop_after`) and reads what was sent
(`bodies`: the JSON bodies, or for a multipart upload its fields, with the
file as ``(filename, content type, bytes)``; `headers`; `paths`).
"""

from __future__ import annotations

import asyncio
import base64
import math
import time
from array import array
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web

KEY = "sk-test-media"
# A real 1x1 transparent PNG (what a decoder accepts), as gpt-image answers in base64.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
PCM_RATE_HZ = 24_000
SECONDS_PER_CHARACTER = 0.05
SPEECH_FORMATS = frozenset({"mp3", "opus", "aac", "flac", "wav", "pcm"})
MP3_FRAME = b"\xff\xf3\x64\xc4" + bytes(140)  # MPEG-2 layer III frame-shaped bytes
SEGMENTS = [(0.0, 1.5, " The first move"), (1.5, 3.25, " is what sets everything in motion.")]
DURATION_S = 3.25


def openai_error(
    message: str, type_: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def invalid(message: str, param: str | None = None) -> web.Response:
    body = openai_error(message, "invalid_request_error", param)
    return web.json_response(body, status=400)


def pcm_for(text: str) -> bytes:
    """A 440 Hz tone, 50 ms per character, 24 kHz signed 16-bit little-endian mono."""
    frames = int(len(text) * SECONDS_PER_CHARACTER * PCM_RATE_HZ)
    samples = array(
        "h", (int(8000 * math.sin(2 * math.pi * 440 * i / PCM_RATE_HZ)) for i in range(frames))
    )
    return samples.tobytes()  # little-endian on the hosts these tests run on


@dataclass
class Failure:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class FakeOpenAIMedia:
    """OpenAI's media endpoints on 127.0.0.1 (see the module docstring)."""

    models: list[str] = field(
        default_factory=lambda: [
            "gpt-image-1", "dall-e-3", "tts-1", "gpt-4o-mini-tts", "whisper-1", "gpt-4o-transcribe"
        ]
    )  # fmt: skip
    chunk_bytes: int = 4_801
    chunk_pause_s: float = 0.02
    bodies: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    sent: list[bytes] = field(default_factory=list)  # the audio each speech call sent
    url: str = ""  # base URL without /v1
    _failure: Failure | None = None
    _drop_after: int | None = None
    _runner: web.AppRunner | None = None

    def fail(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        """Answer every media request with this HTTP error."""
        self._failure = Failure(status, body, headers or {})

    def drop_after(self, chunks: int) -> None:
        """Speech: close the connection after this many chunks of audio."""
        self._drop_after = chunks

    # ---- endpoints -------------------------------------------------------------

    async def _admit(self, request: web.Request, body: dict[str, Any]) -> web.Response | None:
        self.paths.append(request.path)
        self.bodies.append(body)
        self.headers.append(dict(request.headers))
        if request.headers.get("Authorization") != f"Bearer {KEY}":
            error = openai_error(
                "Incorrect API key provided.", "invalid_request_error", code="invalid_api_key"
            )
            return web.json_response(error, status=401)
        if self._failure is not None:
            f = self._failure
            return web.json_response(f.body, status=f.status, headers=f.headers)
        return None

    async def _images(self, request: web.Request) -> web.Response:
        body = await request.json()
        refused = await self._admit(request, body)
        if refused is not None:
            return refused
        model = body.get("model", "dall-e-2")
        if not isinstance(body.get("prompt"), str) or not body["prompt"]:
            return invalid("Missing required parameter: 'prompt'.", "prompt")
        n = body.get("n", 1)
        if not 1 <= n <= 10 or (model == "dall-e-3" and n != 1):
            return invalid("Invalid 'n': dall-e-3 only supports n=1.", "n")
        if model.startswith("gpt-image-") and "response_format" in body:
            return invalid("Unknown parameter: 'response_format'.", "response_format")
        encoded = base64.b64encode(PNG).decode()
        if model.startswith("gpt-image-"):
            data = [{"b64_json": encoded} for _ in range(n)]
            usage = {
                "input_tokens": 12,
                "input_tokens_details": {"image_tokens": 0, "text_tokens": 12},
                "output_tokens": 272,
                "total_tokens": 284,
            }
            answer = {"created": int(time.time()), "data": data, "usage": usage}
            return web.json_response({**answer, "output_format": "png", "size": "1024x1024"})
        if body.get("response_format", "url") == "url":
            data = [{"url": "https://oaidalleapiprodscus.example/img.png"} for _ in range(n)]
        else:
            data = [{"b64_json": encoded, "revised_prompt": body["prompt"]} for _ in range(n)]
        return web.json_response({"created": int(time.time()), "data": data})

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        refused = await self._admit(request, body)
        if refused is not None:
            return refused
        text = body.get("input")
        if not isinstance(text, str) or not text:
            return invalid("Missing required parameter: 'input'.", "input")
        if len(text) > 4096:
            return invalid("String should have at most 4096 characters", "input")
        if not body.get("voice"):
            return invalid("Missing required parameter: 'voice'.", "voice")
        audio_format = body.get("response_format", "mp3")
        if audio_format not in SPEECH_FORMATS:
            return invalid(f"Invalid value: '{audio_format}'.", "response_format")
        audio = pcm_for(text) if audio_format == "pcm" else MP3_FRAME * max(len(text) // 4, 1)
        self.sent.append(audio)
        resp = web.StreamResponse(headers={"Content-Type": f"audio/{audio_format}"})
        await resp.prepare(request)
        for i, at in enumerate(range(0, len(audio), self.chunk_bytes)):
            if self._drop_after is not None and i == self._drop_after:
                await asyncio.sleep(0.1)  # let the client read what was sent
                assert request.transport is not None
                request.transport.close()
                return resp
            await resp.write(audio[at : at + self.chunk_bytes])
            await asyncio.sleep(self.chunk_pause_s)
        await resp.write_eof()
        return resp

    async def _transcriptions(self, request: web.Request) -> web.Response:
        fields: dict[str, Any] = {}
        async for part in await request.multipart():
            assert isinstance(part, BodyPartReader) and part.name is not None
            data = await part.read()
            if part.filename:
                content_type = part.headers.get("Content-Type")
                fields[part.name] = (part.filename, content_type, bytes(data))
            elif part.name.endswith("[]"):
                fields.setdefault(part.name, []).append(data.decode())
            else:
                fields[part.name] = data.decode()
        refused = await self._admit(request, fields)
        if refused is not None:
            return refused
        if "file" not in fields:
            return invalid("Missing required parameter: 'file'.", "file")
        model = fields.get("model", "")
        response_format = fields.get("response_format", "json")
        if "transcribe" in model and response_format != "json":
            return invalid(
                f"response_format '{response_format}' is not compatible with model '{model}'. "
                "Use 'json' or 'text' instead.",
                "response_format",
            )
        if "timestamp_granularities[]" in fields and response_format != "verbose_json":
            return invalid(
                "timestamp_granularities requires response_format=verbose_json",
                "timestamp_granularities",
            )
        if "temperature" in fields and not 0 <= float(fields["temperature"]) <= 1:
            return invalid(
                "Invalid 'temperature': expected a value between 0 and 1.", "temperature"
            )
        text = "".join(t for _, _, t in SEGMENTS).strip()
        if response_format == "json":
            usage = {"type": "tokens", "input_tokens": 40, "output_tokens": 11, "total_tokens": 51}
            return web.json_response({"text": text, "usage": usage})
        segments = [
            {
                "id": i, "seek": 0, "start": start, "end": end, "text": t, "tokens": [50364],
                "temperature": 0.0, "avg_logprob": -0.2, "compression_ratio": 1.1,
                "no_speech_prob": 0.01,
            }
            for i, (start, end, t) in enumerate(SEGMENTS)
        ]  # fmt: skip
        answer = {"task": "transcribe", "language": "english", "duration": DURATION_S}
        return web.json_response(
            {
                **answer,
                "text": text,
                "segments": segments,
                "usage": {"type": "duration", "seconds": 4},
            }
        )

    async def _models(self, request: web.Request) -> web.Response:
        data = [
            {"id": m, "object": "model", "created": 0, "owned_by": "system"} for m in self.models
        ]
        return web.json_response({"object": "list", "data": data})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/images/generations", self._images)
        app.router.add_post("/v1/audio/speech", self._speech)
        app.router.add_post("/v1/audio/transcriptions", self._transcriptions)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
