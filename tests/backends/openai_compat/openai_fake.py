"""A scripted OpenAI-compatible upstream for the openai_compat backend's tests.

`FakeUpstream` speaks the documented wire format of OpenAI's chat completions
(`GET /v1/models`, `POST /v1/chat/completions` streamed as server-sent events,
``data: [DONE]`` at the end) and plays back whatever a test scripts. Its
failures follow OpenAI's error codes guide
(https://platform.openai.com/docs/guides/error-codes): a JSON body
``{"error": {"message", "type", "param", "code"}}`` with the HTTP status, and
``Retry-After`` on a 429 or 503 when the server says when to come back.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from modelyard.assembly import Stack
from modelyard_client.v1 import (
    backend_pb2_grpc,
    gateway_pb2,
    gateway_pb2_grpc,
    registry_pb2_grpc,
)

STACK_ROLES = ("registry", "gateway", "backend-openai-compat")
MODEL = "custom/fake-model"  # the catalog id of the fake's model


def request(text: str = "Hello there", max_tokens: int = 16) -> gateway_pb2.GenerateRequest:
    """A text request for the fake's model."""
    req = gateway_pb2.GenerateRequest(model=MODEL)
    req.input.text = text
    req.params.max_tokens = max_tokens
    return req


Event = dict[str, Any] | str  # a chunk to encode as JSON, or raw `data` text
ChatHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def chunk(
    content: str | None = None,
    *,
    finish_reason: str | None = None,
    role: str | None = None,
    model: str = "fake-model",
) -> dict[str, Any]:
    """One `chat.completion.chunk` as OpenAI streams it (with include_usage on)."""
    delta: dict[str, Any] = {}
    if role is not None:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        "usage": None,
    }


def tool_call_chunk(
    index: int,
    *,
    call_id: str | None = None,
    name: str | None = None,
    arguments: str | None = None,
    model: str = "fake-model",
) -> dict[str, Any]:
    """A chunk carrying one fragment of a tool call, as OpenAI streams them (the Chat
    Completions streaming reference, ``delta.tool_calls``): the first fragment of call
    `index` has its ``id``, ``type`` and name with empty arguments, the next ones pieces
    of ``arguments`` only."""
    fragment: dict[str, Any] = {"index": index}
    if call_id is not None:
        fragment["id"] = call_id
        fragment["type"] = "function"
    function: dict[str, Any] = {}
    if name is not None:
        function["name"] = name
        function.setdefault("arguments", "")
    if arguments is not None:
        function["arguments"] = arguments
    fragment["function"] = function
    event = chunk(model=model)
    event["choices"][0]["delta"] = {"tool_calls": [fragment]}
    return event


def usage_chunk(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    """The extra last chunk `stream_options.include_usage` asks for: no choices, usage set."""
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "fake-model",
        "system_fingerprint": "fp_fake",
        "choices": [],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def openai_error(message: str, type_: str, code: str | None = None) -> dict[str, Any]:
    """An OpenAI error body, as the error codes guide shows it (see the module docstring)."""
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def _content_problem(messages: Any) -> str | None:
    """OpenAI's 400 for a content array it cannot read (API reference, chat completions:
    a user message's content parts are ``{"type": "text", "text"}`` and ``{"type":
    "image_url", "image_url": {"url", "detail"?}}``, the url a web URL or a base64 data
    URL); None when every message is fine."""
    for i, message in enumerate(messages if isinstance(messages, list) else ()):
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            where = f"messages[{i}].content[{j}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                continue
            if kind != "image_url" or message.get("role") != "user":
                return f"Invalid value for '{where}.type': {kind!r} is not supported here."
            url = (part.get("image_url") or {}).get("url")
            if not isinstance(url, str) or not url.startswith(("https://", "data:image/")):
                return f"Invalid '{where}.image_url.url': expected a URL or a base64 data URL."
            if url.startswith("data:"):
                header, _, data = url.partition(",")
                try:
                    base64.b64decode(data, validate=True)
                except ValueError:
                    return (
                        "You uploaded an unsupported image. Please make sure your image is valid."
                    )
                if not header.endswith(";base64"):
                    return f"Invalid '{where}.image_url.url': expected a base64 data URL."
    return None


def _sse(event: Event) -> bytes:
    data = event if isinstance(event, str) else json.dumps(event)
    return f"data: {data}\n\n".encode()


@dataclass
class FakeUpstream:
    """An OpenAI-compatible server on 127.0.0.1 whose chat endpoint a test scripts."""

    models: list[str] = field(default_factory=lambda: ["fake-model"])
    bodies: list[dict[str, Any]] = field(default_factory=list)  # chat requests received
    headers: list[dict[str, str]] = field(default_factory=list)
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)  # see stream_then_hang
    in_flight: int = 0  # chat requests being answered now
    most_in_flight: int = 0  # the most at once since start
    _in_flight_changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    url: str = ""  # base URL without /v1, as a user would set CUSTOM_AI_PROVIDER_URL
    # echo_model: per model, the share of requests answered 500 (drawn from a seeded
    # random) and the seconds each answer waits before it starts; changeable live.
    failure_rates: dict[str, float] = field(default_factory=dict)
    delays_s: dict[str, float] = field(default_factory=dict)
    _random: random.Random = field(default_factory=lambda: random.Random(0))
    _chat: ChatHandler | None = None
    _runner: web.AppRunner | None = None

    # ---- scripting -------------------------------------------------------------

    def stream(self, events: Sequence[Event], *, done: bool = True, delay_s: float = 0.0) -> None:
        """Answer chat requests with these events, then ``data: [DONE]`` when `done`;
        `delay_s` is how long each request waits before its answer starts."""

        async def handler(request: web.Request) -> web.StreamResponse:
            if delay_s:
                await asyncio.sleep(delay_s)
            resp = await self._start_stream(request)
            for event in events:
                await resp.write(_sse(event))
            if done:
                await resp.write(_sse("[DONE]"))
            await resp.write_eof()
            return resp

        self._chat = handler

    def echo_model(
        self,
        pieces: int = 3,
        *,
        piece_delay_s: float = 0.0,
        unfinished: frozenset[str] = frozenset(),
    ) -> None:
        """Answer each chat request with the model it asked for: `pieces` events of
        ``"<model>;"``, then a ``stop`` finish, or none for a model in `unfinished`
        (its stream ends with [DONE] only, as llama.cpp's server does when cut).
        `failure_rates` and `delays_s` make a model fail some requests (HTTP 500 with
        OpenAI's error body) or answer late."""

        async def handler(request: web.Request) -> web.StreamResponse:
            model = (await request.json())["model"]
            if self._random.random() < self.failure_rates.get(model, 0.0):
                body = openai_error(
                    "The server had an error processing your request.", "server_error"
                )
                return web.json_response(body, status=500)
            if self.delays_s.get(model):
                await asyncio.sleep(self.delays_s[model])
            resp = await self._start_stream(request)
            for _ in range(pieces):
                if piece_delay_s:
                    await asyncio.sleep(piece_delay_s)
                await resp.write(_sse(chunk(f"{model};", model=model)))
            if model not in unfinished:
                await resp.write(_sse(chunk(finish_reason="stop", model=model)))
            await resp.write(_sse("[DONE]"))
            await resp.write_eof()
            return resp

        self._chat = handler

    def echo_prompt(self, piece_chars: int = 5, *, piece_delay_s: float = 0.0) -> None:
        """Answer each chat request with its messages' contents joined by newlines, cut
        into pieces of `piece_chars` characters (so a placeholder or a term falls across
        pieces), then a ``stop`` finish: what the answer says is what the upstream got.
        `piece_delay_s` before each piece keeps the client from reading pieces together."""

        async def handler(request: web.Request) -> web.StreamResponse:
            body = await request.json()
            text = "\n".join(str(m.get("content", "")) for m in body["messages"])
            resp = await self._start_stream(request)
            for at in range(0, len(text), piece_chars):
                piece = text[at : at + piece_chars]
                if piece_delay_s:
                    await asyncio.sleep(piece_delay_s)
                await resp.write(_sse(chunk(piece, model=body["model"])))
            await resp.write(_sse(chunk(finish_reason="stop", model=body["model"])))
            await resp.write(_sse("[DONE]"))
            await resp.write_eof()
            return resp

        self._chat = handler

    def stream_then_drop(self, events: Sequence[Event]) -> None:
        """Send these events, then close the connection mid-response: no [DONE], no last chunk.

        The close is orderly (FIN after the data), as uvicorn does when a streaming
        app stops early, so the chunked body simply never gets its terminator.
        """

        async def handler(request: web.Request) -> web.StreamResponse:
            resp = await self._start_stream(request)
            for event in events:
                await resp.write(_sse(event))
            assert request.transport is not None
            request.transport.close()
            return resp

        self._chat = handler

    def stream_then_hang(self, events: Sequence[Event]) -> None:
        """Send these events, then keep the stream open until the client goes away.

        `disconnected` is set when it does (aiohttp cancels the handler then).
        """

        async def handler(request: web.Request) -> web.StreamResponse:
            resp = await self._start_stream(request)
            for event in events:
                await resp.write(_sse(event))
            try:
                await asyncio.get_running_loop().create_future()  # never resolves
            except asyncio.CancelledError:
                self.disconnected.set()
                raise
            return resp

        self._chat = handler

    def fail(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        """Answer chat requests with an HTTP error and a JSON body."""

        async def handler(request: web.Request) -> web.StreamResponse:
            return web.json_response(body, status=status, headers=headers)

        self._chat = handler

    @staticmethod
    async def _start_stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)
        return resp

    # ---- serving ---------------------------------------------------------------

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "object": "list",
                "data": [
                    {"id": m, "object": "model", "created": int(time.time()), "owned_by": "fake"}
                    for m in self.models
                ],
            }
        )

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        self.bodies.append(await request.json())
        self.headers.append(dict(request.headers))
        problem = _content_problem(self.bodies[-1].get("messages"))
        if problem:
            return web.json_response(
                openai_error(problem, "invalid_request_error", "invalid_value"), status=400
            )
        if self._chat is None:
            return web.json_response(openai_error("no script", "server_error"), status=500)
        await self._count_in_flight(+1)
        try:
            return await self._chat(request)
        finally:
            await self._count_in_flight(-1)

    async def _count_in_flight(self, change: int) -> None:
        async with self._in_flight_changed:
            self.in_flight += change
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self._in_flight_changed.notify_all()

    async def until_in_flight(self, count: int) -> None:
        """Return once `count` chat requests are being answered at the same time."""
        async with self._in_flight_changed:
            await self._in_flight_changed.wait_for(lambda: self.in_flight >= count)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        self._runner = web.AppRunner(
            app, shutdown_timeout=1.0, access_log=None, handler_cancellation=True
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        """Stop listening: from now on connections to `url` are refused."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ---- slow and silent upstreams (deadlines) ------------------------------------

    def accept_then_silent(self) -> None:
        """Take the request and never answer: no status line, no headers.

        As a wedged inference server behind a load balancer that still accepts
        connections. `disconnected` is set when the client goes away.
        """

        async def handler(request: web.Request) -> web.StreamResponse:
            await self._until_disconnected()
            raise AssertionError("unreachable")  # pragma: no cover

        self._chat = handler

    def stream_with_pause(
        self, events: Sequence[Event], *, pause_before: int, pause_s: float
    ) -> None:
        """Send the status and headers at once, then these events, waiting `pause_s` before
        the one at index `pause_before`, then ``data: [DONE]``.

        `pause_before=0` is a late first token after a prompt 200, as hosted APIs
        send under load; a later index, a stream that stalls mid-answer (the
        events before the pause may reach the client in one read).
        `disconnected` is set if the client goes away during the pause.
        """

        async def handler(request: web.Request) -> web.StreamResponse:
            resp = await self._start_stream(request)
            for index, event in enumerate(events):
                if index == pause_before:
                    try:
                        await asyncio.sleep(pause_s)
                    except asyncio.CancelledError:
                        self.disconnected.set()
                        raise
                await resp.write(_sse(event))
            await resp.write(_sse("[DONE]"))
            await resp.write_eof()
            return resp

        self._chat = handler

    async def _until_disconnected(self) -> None:
        """Wait until aiohttp cancels the handler (the client went away), then say so."""
        try:
            await asyncio.get_running_loop().create_future()  # never resolves
        except asyncio.CancelledError:
            self.disconnected.set()
            raise

    # ---- a stream cut mid-answer, continued from an assistant prefill ----------------

    def cut_then_continue(
        self,
        pieces: Sequence[str],
        *,
        cut_after: int,
        cutting: str,
        continuing: str,
        takes_prefill: bool = True,
    ) -> None:
        """Model `cutting` streams the first `cut_after` of `pieces`, then, 0.2 s later,
        drops the connection (as `stream_then_drop`); `continuing` takes an assistant prefill.

        A prefill is a last message ``{"role": "assistant", "content": <the answer so far>,
        "prefix": true}``, as Mistral's chat completions take it (its API's
        AssistantMessage.prefix) and DeepSeek's beta chat prefix completion. When
        `takes_prefill` and the last message is exactly that (the pieces before the cut),
        `continuing` streams only the rest of `pieces`, then a ``stop`` finish and its
        usage; otherwise it answers HTTP 400 with OpenAI's error body, the message
        Mistral gives a last assistant message it will not continue (or, when the
        prefill is not the one expected, what is wrong with it). Any other model: 500.
        """
        delivered = "".join(pieces[:cut_after])
        expected = {"role": "assistant", "content": delivered, "prefix": True}

        async def handler(request: web.Request) -> web.StreamResponse:
            body = await request.json()
            model = body["model"]
            if model == cutting:
                resp = await self._start_stream(request)
                for piece in pieces[:cut_after]:
                    await resp.write(_sse(chunk(piece, model=model)))
                # aiohttp raises a broken body before the bytes it still buffers: a pause
                # lets the client read every piece sent before the connection drops.
                await asyncio.sleep(0.2)
                assert request.transport is not None
                request.transport.close()
                return resp
            if model != continuing:
                error = openai_error(f"no script for model {model}", "server_error")
                return web.json_response(error, status=500)
            last = body["messages"][-1]
            if not takes_prefill or last != expected:
                message = (
                    "Expected last role User or Tool (or Assistant with prefix True) "
                    "for serving but got assistant"
                    if not takes_prefill
                    else f"expected the last message {expected!r}, got {last!r}"
                )
                error = openai_error(message, "invalid_request_error", "invalid_request")
                return web.json_response(error, status=400)
            resp = await self._start_stream(request)
            rest = pieces[cut_after:]
            for piece in rest:
                await resp.write(_sse(chunk(piece, model=model)))
            await resp.write(_sse(chunk(finish_reason="stop", model=model)))
            await resp.write(_sse(usage_chunk(len(body["messages"]) * 10, len(rest))))
            await resp.write(_sse("[DONE]"))
            await resp.write_eof()
            return resp

        self._chat = handler


@dataclass
class Clients:
    """A started stack and stubs for its services."""

    stack: Stack
    gateway: gateway_pb2_grpc.GatewayServiceAsyncStub  # type-check-only names of aio stubs
    backend: backend_pb2_grpc.BackendServiceAsyncStub
    registry: registry_pb2_grpc.RegistryServiceAsyncStub


# `stack_for(url, **env)`: registry + gateway + openai_compat backend in front of `url`.
StackFor = Callable[..., Awaitable[Clients]]


class UnframedUpstream:
    """A bare HTTP/1.1 upstream whose chat stream has no framing: its end is the socket's close.

    aiohttp.web always frames a streamed body (chunked encoding), so a body
    that ends only at EOF, as some servers and proxies send it, needs a raw
    socket. The chat answer is `body`, sent verbatim, then the connection closes.
    """

    def __init__(self, body: bytes, models: Sequence[str] = ("fake-model",)) -> None:
        self.body = body
        self.models = list(models)
        self.url = ""
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            request_line, *header_lines = head.split("\r\n")
            length = 0
            for line in header_lines:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            await reader.readexactly(length)
            if request_line.startswith("GET /v1/models "):
                listing = json.dumps(
                    {"object": "list", "data": [{"id": m, "object": "model"} for m in self.models]}
                ).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(listing), listing)
                )
            else:
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                    b"Connection: close\r\n\r\n" + self.body
                )
            await writer.drain()
        finally:
            writer.close()
