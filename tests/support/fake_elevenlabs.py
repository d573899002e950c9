"""A fake ElevenLabs API for the elevenlabs engine's tests: Stream speech, ``POST
/v1/text-to-speech/{voice_id}/stream``.

It follows ElevenLabs' API reference (pages read 2026-12-02):

- the request: https://elevenlabs.io/docs/api-reference/text-to-speech/stream
  (OpenAPI ``endpoint_textToSpeech.stream``): the ``xi-api-key`` header, the
  ``output_format`` query (its enum: ``mp3_22050_32`` ... ``mp3_44100_192``,
  ``pcm_8000`` ... ``pcm_48000``, ``ulaw_8000``, ``alaw_8000``, ``opus_48000_*``;
  default ``mp3_44100_128``), the JSON body ``{"text" (required), "model_id",
  "seed", ...}``; a body or query its schema refuses is FastAPI's HTTP 422
  ``{"detail": [{"loc", "msg", "type"}]}``;
- the answer: 200 with the audio as the body, streamed (chunked) as it is
  made; this fake sends PCM (signed 16-bit little-endian mono, a tone, 60 ms
  per character) for ``pcm_*`` and MPEG-frame-shaped bytes for ``mp3_*`` (not
  decodable audio: the engine passes MP3 through untouched). It also sends
  ``request-id`` and ``character-cost`` headers, which third-party clients
  read (the reference does not document them);
- failures, ``{"detail": {"status", "message"}}``, per ElevenLabs' help
  centre ("API - Error Code 400 or 401",
  https://help.elevenlabs.io/hc/en-us/articles/19572237925521): 401
  ``invalid_api_key`` "Invalid API key", 401 ``quota_exceeded``, 400
  ``voice_not_found``, 400 ``max_character_limit_exceeded``; and 429
  ``too_many_concurrent_requests`` / ``system_busy`` (bodies as third-party
  guides quote them), 500.

Unscripted, it answers a request with the key it accepts, a voice it has and
any model id with the audio, in chunks of `chunk_bytes` (odd by
default, so that a 16-bit sample is split between two reads). A test
scripts other answers (`fail`, `drop_after`, `odd_tail`, `silent`) and reads
what was sent (`calls`, `bodies`, `headers`, `queries`, `voices`).
"""

from __future__ import annotations

import asyncio
import math
import sys
from array import array
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

OUTPUT_FORMATS = frozenset(
    {
        "mp3_22050_32", "mp3_24000_48", "mp3_44100_32", "mp3_44100_64", "mp3_44100_96",
        "mp3_44100_128", "mp3_44100_192", "pcm_8000", "pcm_16000", "pcm_22050", "pcm_24000",
        "pcm_32000", "pcm_44100", "pcm_48000", "ulaw_8000", "alaw_8000", "opus_48000_32",
        "opus_48000_64", "opus_48000_96", "opus_48000_128", "opus_48000_192",
    }
)  # fmt: skip
SECONDS_PER_CHARACTER = 0.06
MP3_FRAME = b"\xff\xfb\x90\x64" + bytes(413)  # 128 kb/s at 44.1 kHz: 417-byte frames


def detail(status: str, message: str) -> dict[str, Any]:
    return {"detail": {"status": status, "message": message}}


INVALID_KEY = detail("invalid_api_key", "Invalid API key")
QUOTA_EXCEEDED = detail("quota_exceeded", "You have insufficient quota to complete this request")


def voice_not_found(voice: str) -> dict[str, Any]:
    return detail("voice_not_found", f"A voice with voice_id '{voice}' was not found.")


def validation_error(loc: list[str], msg: str, kind: str) -> dict[str, Any]:
    return {"detail": [{"loc": loc, "msg": msg, "type": kind}]}


def pcm_for(text: str, rate: int) -> bytes:
    """The PCM this fake speaks `text` as: a 440 Hz tone, `SECONDS_PER_CHARACTER` each."""
    samples = round(len(text) * SECONDS_PER_CHARACTER * rate)
    tone = array("h", (int(8000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(samples)))
    if sys.byteorder == "big":
        tone.byteswap()
    return tone.tobytes()


def mp3_for(text: str) -> bytes:
    return MP3_FRAME * max(1, round(len(text) * SECONDS_PER_CHARACTER * 44100 / 1152))


@dataclass
class FakeElevenLabs:
    """ElevenLabs' Stream speech endpoint on 127.0.0.1, on a free port."""

    voices: set[str] = field(default_factory=lambda: {"JBFqnCBsd6RMkjVDRZzb"})
    api_keys: set[str] = field(default_factory=lambda: {"xi-test-key"})  # keys it accepts
    chunk_bytes: int = 4097
    pause_s: float = 0.005  # between chunks, so that each reaches the engine as its own read
    calls: int = 0  # speech requests received, refused ones too
    bodies: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    queries: list[dict[str, str]] = field(default_factory=list)
    voice_ids: list[str] = field(default_factory=list)  # the path's voice_id, decoded
    sent: list[bytes] = field(default_factory=list)  # the audio of each answer, whole
    url: str = ""  # base URL, as `base_url` takes it (no /v1)
    _failure: tuple[int, dict[str, Any] | str, dict[str, str]] | None = None
    _drop_after: int | None = None
    _odd_tail: bool = False
    _silent: bool = False
    _runner: web.AppRunner | None = None

    # ---- scripting -------------------------------------------------------------

    def fail(
        self, status: int, body: dict[str, Any] | str, headers: dict[str, str] | None = None
    ) -> None:
        """Answer every request with this status, JSON body (or raw text) and headers."""
        self._failure = (status, body, headers or {})

    def drop_after(self, chunks: int) -> None:
        """Send the first `chunks` chunks of the audio, then drop the connection mid-body."""
        self._drop_after = chunks

    def odd_tail(self) -> None:
        """End the PCM with one byte more: half a sample."""
        self._odd_tail = True

    def silent(self) -> None:
        """Answer 200 with an empty body."""
        self._silent = True

    # ---- the API ---------------------------------------------------------------

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        self.calls += 1
        voice = request.match_info["voice_id"]
        self.voice_ids.append(voice)
        self.headers.append(dict(request.headers))
        self.queries.append(dict(request.query))
        try:
            body = await request.json()
        except ValueError:
            body = None
        self.bodies.append(body if isinstance(body, dict) else {})
        key = request.headers.get("xi-api-key", "")
        if key not in self.api_keys:
            return web.json_response(INVALID_KEY, status=401)
        if self._failure is not None:
            status, answer, headers = self._failure
            if isinstance(answer, str):
                return web.Response(status=status, text=answer, headers=headers)
            return web.json_response(answer, status=status, headers=headers)
        output_format = request.query.get("output_format", "mp3_44100_128")
        if output_format not in OUTPUT_FORMATS:
            return web.json_response(
                validation_error(
                    ["query", "output_format"], "value is not a valid enumeration member", "enum"
                ),
                status=422,
            )
        if not isinstance(body, dict) or not isinstance(body.get("text"), str):
            return web.json_response(
                validation_error(["body", "text"], "field required", "value_error.missing"),
                status=422,
            )
        if voice not in self.voices:
            return web.json_response(voice_not_found(voice), status=400)
        text = body["text"]
        if output_format.startswith("pcm_"):
            audio = pcm_for(text, int(output_format.split("_")[1]))
            content_type = "audio/pcm"
            if self._odd_tail:
                audio += b"\x00"
        else:
            audio = mp3_for(text)
            content_type = "audio/mpeg"
        if self._silent:
            audio = b""
        self.sent.append(audio)
        resp = web.StreamResponse(
            headers={
                "Content-Type": content_type,
                "request-id": f"req-{self.calls}",
                "character-cost": str(len(text)),
            }
        )
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        chunks = [audio[i : i + self.chunk_bytes] for i in range(0, len(audio), self.chunk_bytes)]
        for chunk in chunks if self._drop_after is None else chunks[: self._drop_after]:
            await resp.write(chunk)
            await asyncio.sleep(self.pause_s)
        if self._drop_after is not None:
            assert request.transport is not None
            request.transport.close()  # mid-body: no chunked terminator
            return resp
        await resp.write_eof()
        return resp

    # ---- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/text-to-speech/{voice_id}/stream", self._stream)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
