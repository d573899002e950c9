"""The OpenAI- and Anthropic-compatible HTTP edge: an aiohttp.web server over the gateway's
own calls.

Every request goes the way a gRPC call goes, through the same objects: the server's
call gate (refused while draining), the caller's key (``Authorization: Bearer`` or
``x-api-key``, the same identity as the gRPC ``authorization`` metadata) admitted by
the same `Authenticator` for the same RPC scope, an audit row under the RPC's name,
the principal the call runs as, then `GatewayServicer.answer` / `stream` / `embed`:
the security stages, the cache, the core, fallbacks, limits and budgets, with no
second code path. `openai_wire.py` and `anthropic_wire.py` translate the JSON.

Routes: ``POST /v1/chat/completions`` (SSE with ``stream: true``, usage last with
``stream_options.include_usage``), ``POST /v1/completions``, ``POST /v1/embeddings``,
``GET /v1/models`` (the catalog's ids and the routes' aliases), ``GET /v1/models/{id}``,
``POST /v1/images/generations``, ``/v1/audio/speech`` (the audio streamed as the body)
and ``/v1/audio/transcriptions`` (multipart), served by whichever model in the catalog
makes that output (`openai_media.py`), and Anthropic's ``POST /v1/messages`` (its
events when streamed; its error shape, 529 for an unavailable model), and the dashboard's
``GET /dashboard`` and ``/dashboard/data`` (`dashboard.py`; admin keys when keys are on).
A stream that breaks after its first chunk ends with an ``error`` event and no
``[DONE]``: a cut answer is never passed off as finished. A client that goes away
cancels the call down to the backend (aiohttp cancels the handler).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import AbstractContextManager, aclosing, nullcontext
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec
from aiohttp import web

from modelyard.edges.anthropic_wire import (
    EventWriter,
    anthropic_status,
    message_json,
    messages_request,
)
from modelyard.edges.anthropic_wire import error_body as anthropic_error
from modelyard.edges.anthropic_wire import error_event as anthropic_error_event
from modelyard.edges.dashboard import PAGE, DashboardRoutes, Reading
from modelyard.edges.openai_media import (
    MIME_OF_FORMAT,
    image_request,
    images_json,
    speech_request,
    transcript_json,
    transcription_request,
)
from modelyard.edges.openai_wire import (
    ChunkWriter,
    chat_completion,
    chat_request,
    completion_request,
    embed_request,
    embeddings_json,
    error_body,
    http_status,
    parse_json,
    text_completion,
)
from modelyard.gateway.core import GatewayCore
from modelyard.ratelimit.caller import api_key_from_metadata
from modelyard.security.audit import AuditLog, note_caller, note_request
from modelyard.security.authn import Authenticator
from modelyard.security.principal import OPEN, running_as
from modelyard.server.interceptor import CallGate
from modelyard_client.errors import (
    FailedPrecondition,
    InvalidRequest,
    ModelNotFound,
    ModelyardError,
    RequestTooLarge,
)
from modelyard_client.v1 import gateway_pb2

log = logging.getLogger(__name__)

_GENERATE = "modelyard.v1.GatewayService/Generate"
_STREAM = "modelyard.v1.GatewayService/GenerateStream"
_EMBED = "modelyard.v1.GatewayService/Embed"
_LIST = "modelyard.v1.RegistryService/ListModels"
# A JSON body bigger than the input size limit cannot pass it; some room for the JSON.
_BODY_ROOM = 2
_NOTHING: AbstractContextManager[Any] = nullcontext()
# A request's streamed response, once under way.
_STARTED = web.RequestKey("modelyard.stream_response", web.StreamResponse)


class GatewayCalls(Protocol):
    """The gateway's calls free of their transport (`GatewayServicer` has them)."""

    @property
    def core(self) -> GatewayCore: ...

    def answer(
        self,
        request: gateway_pb2.GenerateRequest,
        api_key: str | None,
        time_remaining: float | None,
    ) -> Awaitable[gateway_pb2.GenerateResponse]: ...

    def stream(
        self,
        request: gateway_pb2.GenerateRequest,
        api_key: str | None,
        time_remaining: float | None,
    ) -> AsyncGenerator[gateway_pb2.GenerateChunk, None]: ...

    def embed(
        self, request: gateway_pb2.EmbedRequest, api_key: str | None, time_remaining: float | None
    ) -> Awaitable[gateway_pb2.EmbedResponse]: ...


@dataclass
class EdgeCalls:
    """What a request passes through, shared with the gRPC server of the same process."""

    gateway: GatewayCalls  # the process's GatewayServicer
    gate: CallGate
    authenticator: Authenticator | None  # None: keys not required (the loopback default)
    audit: AuditLog | None
    aliases: Callable[[], list[str]] = list  # the routes' aliases, for /v1/models
    dashboard: Reading | None = None  # GET /dashboard and its data (`edges/dashboard.py`)

    @property
    def max_body_bytes(self) -> int:
        return self.gateway.core.settings.input_limits.max_input_bytes * _BODY_ROOM


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=msgspec.json.encode(body),
        content_type="application/json",
        headers=headers,
    )


def error_response(err: ModelyardError, anthropic: bool = False) -> web.Response:
    """`err` in the OpenAI API's shape, or with `anthropic` the Messages API's."""
    status = anthropic_status(err) if anthropic else http_status(err)[0]
    headers = {}
    retry = err.wire_details().retry_after_s
    if retry:
        headers["retry-after"] = str(max(1, round(retry)))
        headers["retry-after-ms"] = str(int(retry * 1000))
    return _json(status, anthropic_error(err) if anthropic else error_body(err), headers)


def _openai_error_event(err: ModelyardError) -> bytes:
    return b"data: " + json.dumps(error_body(err), separators=(",", ":")).encode() + b"\n\n"


class _Writer(Protocol):
    def events(self, chunk: gateway_pb2.GenerateChunk) -> bytes: ...


class OpenAIEdge:
    """The routes; each a thin handler over `EdgeCalls`."""

    def __init__(self, calls: EdgeCalls) -> None:
        self.calls = calls

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.calls.max_body_bytes + 1)
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/embeddings", self.embeddings)
        app.router.add_post("/v1/messages", self.messages)
        app.router.add_post("/v1/images/generations", self.images)
        app.router.add_post("/v1/audio/speech", self.speech)
        app.router.add_post("/v1/audio/transcriptions", self.transcriptions)
        app.router.add_get("/v1/models", self.list_models)
        app.router.add_get("/v1/models/{model:.+}", self.get_model)
        reading = self.calls.dashboard
        if reading is not None:
            DashboardRoutes(self.calls.gate, self.calls.authenticator, reading).add_to(app)
        return app

    # ---- the call around every request (as `server/interceptor.py` wraps a gRPC one) ----

    async def _call(
        self,
        http: web.Request,
        rpc: str,
        run: Callable[[str | None], Awaitable[web.StreamResponse]],
        anthropic: bool = False,
    ) -> web.StreamResponse:
        try:
            self.calls.gate.check()
            with self.calls.audit.call(rpc) if self.calls.audit else _NOTHING:
                key = api_key_from_metadata(http.headers.items())
                auth = self.calls.authenticator
                principal = OPEN if auth is None else auth.admit(key, rpc)
                with running_as(note_caller(principal)):
                    return await run(key)
        except ModelyardError as err:
            # A stream already under way has had its error event: its response stands.
            started = http.get(_STARTED)
            return started if started is not None else error_response(err, anthropic)

    async def _body(self, http: web.Request) -> dict[str, Any]:
        limit = self.calls.max_body_bytes
        if http.content_length is not None and http.content_length > limit:
            raise RequestTooLarge(
                f"the request body is {http.content_length} bytes; the limit is {limit} bytes"
            )
        return parse_json(await http.read(), limit)

    # ---- routes ----------------------------------------------------------------------

    async def chat_completions(self, http: web.Request) -> web.StreamResponse:
        return await self._generate(http, chat=True)

    async def completions(self, http: web.Request) -> web.StreamResponse:
        return await self._generate(http, chat=False)

    async def _generate(self, http: web.Request, *, chat: bool) -> web.StreamResponse:
        try:
            body = await self._body(http)
            request, stream, usage = (chat_request if chat else completion_request)(body)
        except ModelyardError as err:
            return error_response(err)

        async def run(key: str | None) -> web.StreamResponse:
            note_request(request)
            if not stream:
                answer = await self.calls.gateway.answer(request, key, None)
                return _json(200, chat_completion(answer) if chat else text_completion(answer))
            chunks = self.calls.gateway.stream(request, key, None)
            return await _sse(http, chunks, ChunkWriter(usage, chat))

        return await self._call(http, _STREAM if stream else _GENERATE, run)

    async def messages(self, http: web.Request) -> web.StreamResponse:
        """The Anthropic Messages API (`anthropic_wire.py`), its errors in its own shape."""
        try:
            request, stream = messages_request(await self._body(http))
        except ModelyardError as err:
            return error_response(err, anthropic=True)

        async def run(key: str | None) -> web.StreamResponse:
            note_request(request)
            if not stream:
                return _json(200, message_json(await self.calls.gateway.answer(request, key, None)))
            chunks = self.calls.gateway.stream(request, key, None)
            return await _sse(http, chunks, EventWriter(), anthropic_error_event)

        return await self._call(http, _STREAM if stream else _GENERATE, run, anthropic=True)

    # ---- images, speech, transcription (`openai_media.py`) ------------------------------

    async def images(self, http: web.Request) -> web.StreamResponse:
        try:
            request = image_request(await self._body(http))
        except ModelyardError as err:
            return error_response(err)

        async def run(key: str | None) -> web.StreamResponse:
            note_request(request)
            answer = await self.calls.gateway.answer(request, key, None)
            if not answer.output.images:
                raise FailedPrecondition(
                    f"model '{answer.model_id}' answered no image: it does not make images"
                )
            return _json(200, images_json(answer))

        return await self._call(http, _GENERATE, run)

    async def speech(self, http: web.Request) -> web.StreamResponse:
        try:
            request = speech_request(await self._body(http))
        except ModelyardError as err:
            return error_response(err)

        async def run(key: str | None) -> web.StreamResponse:
            note_request(request)
            chunks = self.calls.gateway.stream(request, key, None)
            return await _audio(http, chunks, MIME_OF_FORMAT[request.params.audio_format])

        return await self._call(http, _STREAM, run)

    async def transcriptions(self, http: web.Request) -> web.StreamResponse:
        try:
            fields, audio, mime = await _multipart(http)
            request, response_format = transcription_request(fields, audio, mime)
        except ModelyardError as err:
            return error_response(err)

        async def run(key: str | None) -> web.StreamResponse:
            note_request(request)
            answer = await self.calls.gateway.answer(request, key, None)
            if response_format == "text":
                return web.Response(text=answer.text, content_type="text/plain")
            return _json(200, transcript_json(answer, response_format))

        return await self._call(http, _GENERATE, run)

    async def embeddings(self, http: web.Request) -> web.StreamResponse:
        try:
            request, encoding = embed_request(await self._body(http))
        except ModelyardError as err:
            return error_response(err)

        async def run(key: str | None) -> web.StreamResponse:
            note_request(request)
            answer = await self.calls.gateway.embed(request, key, None)
            return _json(200, embeddings_json(answer, encoding))

        return await self._call(http, _EMBED, run)

    async def list_models(self, http: web.Request) -> web.StreamResponse:
        async def run(key: str | None) -> web.StreamResponse:
            return _json(200, {"object": "list", "data": self._models()})

        return await self._call(http, _LIST, run)

    async def get_model(self, http: web.Request) -> web.StreamResponse:
        wanted = http.match_info["model"]

        async def run(key: str | None) -> web.StreamResponse:
            for model in self._models():
                if model["id"] == wanted:
                    return _json(200, model)
            raise ModelNotFound(wanted, "the catalog")

        return await self._call(http, _LIST, run)

    def _models(self) -> list[dict[str, Any]]:
        created = int(time.time())
        out = [
            {
                "id": m.id,
                "object": "model",
                "created": created,
                "owned_by": m.provider or "modelyard",
            }
            for m in sorted(self.calls.gateway.core.catalog.models(), key=lambda m: m.id)
        ]
        out += [
            {"id": alias, "object": "model", "created": created, "owned_by": "modelyard"}
            for alias in sorted(self.calls.aliases())
        ]
        return out


async def _sse(
    http: web.Request,
    chunks: AsyncGenerator[gateway_pb2.GenerateChunk, None],
    writer: _Writer,
    error_event: Callable[[ModelyardError], bytes] = _openai_error_event,
) -> web.StreamResponse:
    """Stream `chunks` as SSE. A failure before the first chunk is an ordinary error
    answer (its status); after it, an ``error`` event and no ``[DONE]``.

    The chunk with the finish reason is the answer's last: its events go out with the
    body's end in one write (and the head, when it is the first too), not three."""
    async with aclosing(chunks):
        try:
            first = await anext(chunks)
        except StopAsyncIteration:
            first = gateway_pb2.GenerateChunk()
        response = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            },
        )
        await response.prepare(http)  # aiohttp sends the head with the first write
        http[_STARTED] = response
        ended = await _send_events(response, writer.events(first), bool(first.finish_reason))
        try:
            async for chunk in chunks:
                ended = await _send_events(
                    response, writer.events(chunk), bool(chunk.finish_reason)
                )
        except ModelyardError as err:
            if ended:  # the answer was whole: nothing more goes out, the audit row has it
                raise
            await response.write(error_event(err))
            await response.write_eof()
            raise  # the call's error, for its audit row; `_call` keeps this response
        await response.write_eof()  # nothing more when the last chunk ended it
        return response


async def _send_events(response: web.StreamResponse, events: bytes, last: bool) -> bool:
    """`events` sent, with the body's end when they are the answer's `last`; whether
    the body has ended."""
    if last:
        await response.write_eof(events)
    else:
        await response.write(events)
    return last


async def _multipart(http: web.Request) -> tuple[dict[str, str], bytes, str]:
    """A transcription's form: its text fields, the file's bytes and declared type."""
    if not http.content_type.startswith("multipart/form-data"):
        raise InvalidRequest("the body must be multipart/form-data with a file", field="file")
    form = await http.post()
    fields: dict[str, str] = {}
    audio, mime = b"", ""
    for name, value in form.items():
        if isinstance(value, web.FileField):
            if name != "file":
                raise InvalidRequest(f"{name}: only the field 'file' holds a file", field=name)
            audio, mime = value.file.read(), value.content_type or ""
        else:
            fields[name] = str(value)
    return fields, audio, "" if mime == "application/octet-stream" else mime


async def _audio(
    http: web.Request, chunks: AsyncGenerator[gateway_pb2.GenerateChunk, None], mime: str
) -> web.StreamResponse:
    """The answer's audio as the body, each piece as it comes. A failure before the first
    chunk is an ordinary error answer; after it the connection is cut (a binary body has
    no room for an error): the client sees a body that did not end, never a whole one."""
    async with aclosing(chunks):
        first = await anext(chunks, gateway_pb2.GenerateChunk())
        response = web.StreamResponse(status=200, headers={"Content-Type": mime})
        await response.prepare(http)
        http[_STARTED] = response
        await response.write(first.output.audio.data)
        try:
            async for chunk in chunks:
                if chunk.output.audio.data:
                    await response.write(chunk.output.audio.data)
        except ModelyardError:
            if http.transport is not None:
                http.transport.abort()
            raise
        await response.write_eof()
        return response


@dataclass
class RunningEdge:
    runner: web.AppRunner
    site: web.TCPSite
    port: int

    @property
    def base_url(self) -> str:
        host = self.site._host or "127.0.0.1"
        return f"http://{host}:{self.port}/v1"

    @property
    def dashboard_url(self) -> str:
        host = self.site._host or "127.0.0.1"
        return f"http://{host}:{self.port}{PAGE}"

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_edge(calls: EdgeCalls, listen: str, reuse_port: bool = False) -> RunningEdge:
    """Serve the edge on `listen` (host:port; port 0 picks a free one); `reuse_port`:
    SO_REUSEPORT, for gateway workers sharing the port."""
    host, _, port = listen.rpartition(":")
    runner = web.AppRunner(OpenAIEdge(calls).app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(
        runner, host or "127.0.0.1", int(port), reuse_address=True, reuse_port=reuse_port or None
    )
    await site.start()
    server = site._server
    assert server is not None
    bound = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    return RunningEdge(runner, site, int(bound))
