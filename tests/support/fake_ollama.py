"""A fake Ollama daemon, answering as Ollama's published API reference describes.

The reference followed: docs/api.md of ollama/ollama at commit 01e52d24bc00
(https://github.com/ollama/ollama/blob/main/docs/api.md, the API of Ollama
0.5-0.12: ``done_reason`` ``load``/``unload`` on ``/api/chat``), and its
errors page https://docs.ollama.com/api/errors (read 2026-12-01). `VERSION`
is what ``GET /api/version`` answers.

- ``POST /api/chat`` and ``POST /api/generate``: NDJSON lines (``message.content``
  or ``response``, ``done: false``), then a last line with ``done: true``,
  ``done_reason`` (``stop``, or ``length`` when ``options.num_predict`` cut
  the answer), ``prompt_eval_count`` and ``eval_count``; one JSON object with
  ``"stream": false``. No messages (no prompt) only loads the model, answered
  ``done_reason: "load"``; with ``keep_alive: 0`` unloads it, ``"unload"``.
- ``keep_alive`` (seconds as a number, or a duration such as ``"5m"``; default
  5 m; negative: forever) keeps a model loaded after each call; ``GET /api/ps``
  lists the models loaded and not yet expired.
- a message's ``images``: base64 strings, refused with 400 when not base64.
- ``GET /api/tags``, ``POST /api/show``, ``GET /api/version``.
- ``POST /api/embed`` (https://docs.ollama.com/api/embed, read 2026-12-02):
  ``model``, ``input`` (a string or a list of them), ``dimensions``,
  ``keep_alive``, ``truncate``; answered ``{"model", "embeddings": [[...]],
  "total_duration", "load_duration", "prompt_eval_count"}`` (`embed_vector`,
  one token per word), 404 for a model not pulled, or the next of
  `embed_replies` (a `Reply`'s status, error and headers). The reference
  documents no refusal of a model without the embedding capability.
- tools (the reference's "Chat request (with tools)" and
  https://ollama.com/blog/streaming-tool, 2025-05-28): ``tools`` OpenAI function
  definitions; a model without the ``tools`` capability is refused with 400
  ``"<model>" does not support tools``; an assistant message's ``tool_calls`` are
  ``{"function": {"name", "arguments": {...}}}``, arguments an object (Go's
  decoder refuses a string with 400); a reply's `Reply.tool_calls` are streamed
  whole in one line's ``message.tool_calls``, no ids, and the answer ends
  ``done_reason: "stop"``.
- Errors are ``{"error": "..."}`` with a status: 404 for a model not pulled,
  400 for a model that cannot chat (an embedding model) and a body that is no
  JSON; mid-stream, one NDJSON line ``{"error": "..."}``.

Tests script answers with `reply` (a `Reply`: its text, an error status and
body with headers such as ``Retry-After``, a cut in the middle, an error line)
and read what the engine sent in `received`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

VERSION = "0.12.6"
DEFAULT_KEEP_ALIVE_S = 300.0
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass
class FakeModel:
    name: str  # "<model>:<tag>"
    family: str
    parameter_size: str
    quantization_level: str
    size: int
    digest: str
    capabilities: list[str] | None  # None: an old daemon that does not report them
    context_length: int
    parameters: str = ""
    extra_info: dict[str, Any] = field(default_factory=dict)

    def details(self) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": self.family,
            "families": [self.family],
            "parameter_size": self.parameter_size,
            "quantization_level": self.quantization_level,
        }


def default_models() -> list[FakeModel]:
    return [
        FakeModel(
            "gemma3:270m", "gemma3", "268.10M", "Q8_0", 291_554_930,
            "e7d36fb2c3b3" + "0" * 52, ["completion"], 32768,
            parameters='stop "<end_of_turn>"\ntemperature 1\ntop_k 64',
        ),
        FakeModel(
            "llava:7b", "llama", "7B", "Q4_0", 4_733_363_377,
            "8dd30f6b0cb1" + "1" * 52, ["completion", "vision"], 32768,
            extra_info={"llama.vision.block_count": 24},
        ),
        FakeModel(
            "nomic-embed-text:latest", "nomic-bert", "137M", "F16", 274_302_450,
            "0a109f422b47" + "2" * 52, ["embedding"], 2048,
        ),
        FakeModel(
            "qwen3:8b", "qwen3", "8.2B", "Q4_K_M", 5_225_376_047,
            "500a1f067a9f" + "3" * 52, ["completion", "tools", "thinking"], 40960,
            parameters="num_ctx 8192\ntemperature 0.6",
        ),
    ]  # fmt: skip


@dataclass
class Reply:
    """One scripted answer to a generation (``/api/chat`` or ``/api/generate``).

    `status` other than 200: an error body ``{"error": error}`` with `headers`.
    `raw_lines` follow `texts` as they are (a line no daemon would send).
    `cut`: after `texts`, ``"close"`` drops the connection mid-body, ``"end"``
    ends the body cleanly, both without the ``done`` line; `error_line` sends
    ``{"error": error_line}`` after `texts` instead of the ``done`` line.
    """

    texts: list[str] = field(default_factory=lambda: ["Hello", " there"])
    done_reason: str = "stop"
    prompt_eval_count: int | None = 12
    eval_count: int | None = 2
    status: int = 200
    error: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    cut: Literal["close", "end"] | None = None
    error_line: str | None = None
    pause_s: float = 0.0  # before each text line
    raw_lines: list[str] = field(default_factory=list)  # sent as they are, after `texts`
    # Calls streamed in one line after `texts`: {"function": {"name", "arguments": {...}}}.
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Received:
    path: str
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class FakeOllama:
    models: list[FakeModel] = field(default_factory=default_models)
    loaded: list[str] = field(default_factory=lambda: ["gemma3:270m"])
    # /api/show answers this many requests, then drops every later connection
    # without a response: the daemon stopped answering part way.
    answer_shows: int | None = None
    show_errors: dict[str, tuple[int, str]] = field(default_factory=dict)  # name -> (status, msg)
    ps_status: int = 200
    shows: list[str] = field(default_factory=list)  # model names /api/show was asked for
    received: list[Received] = field(default_factory=list)  # every generation, load, unload
    replies: deque[Reply] = field(default_factory=deque)  # scripted; then the default Reply
    hung_up: int = 0  # answers whose client dropped the connection before their end
    embed_replies: deque[Reply] = field(default_factory=deque)  # scripted /api/embed failures
    url: str = ""
    _expires: dict[str, float | None] = field(default_factory=dict)  # None: never
    _runner: web.AppRunner | None = None

    def reply(self, *replies: Reply) -> None:
        """Answer the next generations with these, in order."""
        self.replies.extend(replies)

    def chats(self) -> list[dict[str, Any]]:
        """The bodies of every ``/api/chat`` received."""
        return [r.body for r in self.received if r.path == "/api/chat"]

    def completions(self) -> list[dict[str, Any]]:
        """The bodies of every ``/api/generate`` received."""
        return [r.body for r in self.received if r.path == "/api/generate"]

    def _find(self, name: str) -> FakeModel | None:
        wanted = name if ":" in name else f"{name}:latest"
        return next((m for m in self.models if m.name == wanted), None)

    def _running(self) -> list[str]:
        now = time.time()
        self.loaded = [n for n in self.loaded if (self._expires.get(n) or float("inf")) > now]
        return self.loaded

    def _keep(self, name: str, keep_alive: Any) -> None:
        seconds = _seconds(keep_alive)
        if seconds == 0:
            self.loaded = [n for n in self.loaded if n != name]
            return
        if name not in self.loaded:
            self.loaded.append(name)
        self._expires[name] = None if seconds < 0 else time.time() + seconds

    # ---- generation -----------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generation(request, "messages", "message")

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        return await self._generation(request, "prompt", "response")

    async def _generation(
        self, request: web.Request, asked: str, answered: str
    ) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError as exc:
            return _error(400, f"invalid character in request body: {exc}")
        self.received.append(Received(request.path, body, dict(request.headers)))
        bad_image = _image_problem(body.get(asked))
        if bad_image:  # Go's JSON binding of ``images`` ([]ImageData: base64 bytes) fails
            return _error(400, bad_image)
        name = str(body.get("model") or "")
        model = self._find(name)
        if model is None:
            return _error(404, f"model '{name}' not found")
        if not body.get(asked):
            self._keep(model.name, body.get("keep_alive", DEFAULT_KEEP_ALIVE_S))
            gone = _seconds(body.get("keep_alive", DEFAULT_KEEP_ALIVE_S)) == 0
            return web.json_response(
                {
                    "model": name,
                    "created_at": _now(),
                    answered: {"role": "assistant", "content": ""} if asked == "messages" else "",
                    "done_reason": "unload" if gone else "load",
                    "done": True,
                }
            )
        if "completion" not in (model.capabilities or ["completion"]):
            action = "chat" if asked == "messages" else "generate"
            return _error(400, f'"{name}" does not support {action}')
        if body.get("tools") and "tools" not in (model.capabilities or []):
            return _error(400, f'"{name}" does not support tools')
        bad_call = _tool_call_problem(body.get(asked))
        if bad_call:
            return _error(400, bad_call)
        reply = self.replies.popleft() if self.replies else Reply()
        if reply.status != 200:
            return _error(reply.status, reply.error, reply.headers)
        self._keep(model.name, body.get("keep_alive", DEFAULT_KEEP_ALIVE_S))
        texts, reason = list(reply.texts), reply.done_reason
        limit = (body.get("options") or {}).get("num_predict")
        if isinstance(limit, int) and 0 <= limit < len(texts):
            texts, reason = texts[:limit], "length"
        lines = [_line(name, answered, t, done=False) for t in texts]
        if reply.tool_calls:
            calls = _line(name, answered, "", done=False)
            calls[answered]["tool_calls"] = reply.tool_calls
            lines.append(calls)
        last = {
            **_line(name, answered, "", done=True),
            "done_reason": reason,
            "total_duration": 1_000_000,
            "load_duration": 10_000,
        }
        for key in ("prompt_eval_count", "eval_count"):
            count = getattr(reply, key)
            if count is not None:
                last[key] = count if key == "prompt_eval_count" else min(count, len(texts))
        if body.get("stream") is False:
            whole = "".join(texts)
            return web.json_response(
                {**last, answered: _line(name, answered, whole, done=True)[answered]}
            )
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await resp.prepare(request)
        try:
            for line in lines:
                await asyncio.sleep(reply.pause_s)
                await resp.write(json.dumps(line).encode() + b"\n")
        except ConnectionResetError:  # aiohttp's ClientConnectionResetError is one
            self.hung_up += 1
            return resp
        for raw in reply.raw_lines:
            await resp.write(raw.encode() + b"\n")
        if reply.cut == "close":
            assert request.transport is not None
            request.transport.close()  # mid-body: no last chunk
            return resp
        if reply.error_line is not None:
            await resp.write(json.dumps({"error": reply.error_line}).encode() + b"\n")
        elif reply.cut is None:
            await resp.write(json.dumps(last).encode() + b"\n")
        await resp.write_eof()
        return resp

    # ---- embeddings -------------------------------------------------------------

    async def _embed(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.received.append(Received(request.path, body, dict(request.headers)))
        name = str(body.get("model") or "")
        model = self._find(name)
        if model is None:
            return _error(404, f"model '{name}' not found")
        reply = self.embed_replies.popleft() if self.embed_replies else None
        if reply is not None and reply.status != 200:
            return _error(reply.status, reply.error, reply.headers)
        given = body.get("input")
        texts = [given] if isinstance(given, str) else list(given or [])
        length = int(body.get("dimensions") or 768)
        self._keep(model.name, body.get("keep_alive", DEFAULT_KEEP_ALIVE_S))
        return web.json_response(
            {
                "model": name,
                "embeddings": [embed_vector(str(t), length) for t in texts],
                "total_duration": 14_143_917,
                "load_duration": 1_019_500,
                "prompt_eval_count": sum(len(str(t).split()) for t in texts),
            }
        )

    # ---- models ---------------------------------------------------------------

    async def _tags(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "models": [
                    {
                        "name": m.name,
                        "model": m.name,
                        "modified_at": "2025-10-03T23:34:03.409490317-07:00",
                        "size": m.size,
                        "digest": m.digest,
                        "details": m.details(),
                    }
                    for m in self.models
                ]
            }
        )

    async def _show(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        name = str(body.get("model") or body.get("name") or "")
        self.shows.append(name)
        if self.answer_shows is not None and len(self.shows) > self.answer_shows:
            assert request.transport is not None
            request.transport.close()
            return web.Response()  # never sent: the connection is gone
        if name in self.show_errors:
            status, message = self.show_errors[name]
            return _error(status, message)
        model = self._find(name)
        if model is None:
            return _error(404, f"model '{name}' not found")
        answer: dict[str, Any] = {
            "license": "test license",
            "modified_at": "2025-08-14T15:49:43.634137516-07:00",
            "template": "{{ .Prompt }}",
            "parameters": model.parameters,
            "details": model.details(),
            "model_info": {
                "general.architecture": model.family,
                "general.file_type": 15,
                "general.parameter_count": 268_098_176,
                "general.quantization_version": 2,
                f"{model.family}.context_length": model.context_length,
                f"{model.family}.embedding_length": 640,
                "tokenizer.ggml.model": "llama",
                "tokenizer.ggml.tokens": None,
                **model.extra_info,
            },
        }
        if model.capabilities is not None:
            answer["capabilities"] = model.capabilities
        return web.json_response(answer)

    async def _ps(self, request: web.Request) -> web.Response:
        if self.ps_status != 200:
            return _error(self.ps_status, "ps failed")
        running = [m for m in self.models if m.name in self._running()]
        return web.json_response(
            {
                "models": [
                    {
                        "name": m.name,
                        "model": m.name,
                        "size": m.size + 100_000_000,
                        "digest": m.digest,
                        "details": m.details(),
                        "expires_at": "2025-10-17T16:47:07.93355-07:00",
                        "size_vram": m.size,
                        "context_length": 4096,
                    }
                    for m in running
                ]
            }
        )

    async def _version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": VERSION})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/chat", self._chat)
        app.router.add_post("/api/generate", self._generate)
        app.router.add_post("/api/embed", self._embed)
        app.router.add_get("/api/tags", self._tags)
        app.router.add_post("/api/show", self._show)
        app.router.add_get("/api/ps", self._ps)
        app.router.add_get("/api/version", self._version)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def _image_problem(messages: Any) -> str | None:
    """The daemon's error for a message's ``images`` entry that is not base64 (the API
    reference: "a list of images ... base64-encoded"), as Go's decoder words it; None."""
    for message in messages if isinstance(messages, list) else ():
        for image in message.get("images") or () if isinstance(message, dict) else ():
            try:
                base64.b64decode(image, validate=True)
            except (ValueError, TypeError):
                return "illegal base64 data at input byte 0"
    return None


def _tool_call_problem(messages: Any) -> str | None:
    """The daemon's 400 for an assistant call whose arguments are not an object (Go
    decodes them into a map), as its decoder words it; None when every call is fine."""
    for message in messages if isinstance(messages, list) else ():
        for call in message.get("tool_calls") or () if isinstance(message, dict) else ():
            arguments = (call.get("function") or {}).get("arguments")
            if not isinstance(arguments, dict):
                kind = "string" if isinstance(arguments, str) else type(arguments).__name__
                return (
                    f"json: cannot unmarshal {kind} into Go struct field "
                    "ToolCallFunction.messages.tool_calls.function.arguments of type "
                    "api.ToolCallFunctionArguments"
                )
    return None


def embed_vector(text: str, length: int = 768) -> list[float]:
    """The fake's vector of `text`: the same text, the same vector."""
    seed = sum(ord(c) for c in text) % 89
    return [round(((seed + 3 * i) % 13) / 12 - 0.5, 4) for i in range(length)]


def _line(model: str, answered: str, text: str, *, done: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"model": model, "created_at": _now(), "done": done}
    out[answered] = {"role": "assistant", "content": text} if answered == "message" else text
    return out


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def _seconds(keep_alive: Any) -> float:
    """A ``keep_alive`` in seconds: a number is seconds, a string a Go duration."""
    if isinstance(keep_alive, int | float):
        return float(keep_alive)
    text = str(keep_alive).strip()
    try:
        return float(text)
    except ValueError:
        pass
    sign = -1.0 if text.startswith("-") else 1.0
    parts = _DURATION.findall(text.lstrip("-"))
    return sign * sum(float(n) * _UNIT_S[unit] for n, unit in parts)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
