"""A fake of Anthropic's API for the `anthropic` backend's tests.

It follows Anthropic's published API reference, ``anthropic-version:
2023-06-01``, as read on 2026-12-01:

- ``POST /v1/messages`` (https://docs.anthropic.com/en/api/messages) with
  ``stream: true``, answered with server-sent events as the streaming guide
  shows them (https://docs.anthropic.com/en/docs/build-with-claude/streaming):
  ``event: <type>`` and ``data: <JSON with the same type>`` per event;
  ``message_start`` (usage with ``input_tokens``,
  ``cache_creation_input_tokens``, ``cache_read_input_tokens``,
  ``output_tokens``), ``content_block_start``, ``ping``,
  ``content_block_delta`` (``text_delta``), ``content_block_stop``,
  ``message_delta`` (``stop_reason``, cumulative ``usage``), ``message_stop``;
  an ``error`` event after the 200 when the stream fails;
- tools (the tool use guide,
  https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/implement-tool-use,
  read 2026-12-02): ``tools`` ``[{"name", "description", "input_schema"}]``,
  ``tool_choice`` ``{"type": "auto" | "any" | "tool" (with "name") | "none"}``,
  ``tool_use`` blocks in assistant turns and ``tool_result`` blocks
  (``tool_use_id``, ``content``) in the user turn after, which must begin with a
  result for each call (the API's 400s: "Messages following `tool_use` blocks
  must begin with a matching number of `tool_result` blocks", "unexpected
  `tool_use_id` found in `tool_result` blocks"); a streamed call is a
  ``content_block_start`` of type ``tool_use`` and ``input_json_delta``
  fragments of its arguments (``partial_json``), ``stop_reason: "tool_use"``
  (`tool_use_events`);
- ``GET /v1/models`` (https://docs.anthropic.com/en/api/models-list): ``data``
  newest first, ``limit`` (default 20, at most 1000) and ``after_id``,
  ``has_more``, ``first_id``, ``last_id``;
- errors (https://docs.anthropic.com/en/api/errors): the status of the error
  type and ``{"type": "error", "error": {"type", "message"}, "request_id"}``,
  a ``request-id`` header on every answer, ``retry-after`` on a 429 when
  scripted.

Before any scripted answer it checks what the real API checks: the
``x-api-key`` (401 ``authentication_error``), ``anthropic-version`` (400), a
JSON body with ``model``, a positive ``max_tokens`` and ``messages`` (400
``invalid_request_error``), image blocks of the documented shape (400), tool
definitions, tool choice and tool turns as above (400), a model it serves
(404 ``not_found_error``), and, for a model given a window in `context_windows`,
a prompt that fits it (400 ``invalid_request_error`` "prompt is too long: N tokens
> M maximum", as the errors guide's 400 reads; N estimated here at 4 characters a
token); a ``top_p`` outside 0 to 1, the Messages reference's range (400
``invalid_request_error``).
It records every request's body and headers so a test can assert the wire
format the engine sent, and answers as a test scripts it: a normal stream,
an error body with a status, a stream cut in the middle, an ``error`` event
inside the stream, or events verbatim.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

API_KEY = "sk-ant-api03-fake-key-for-tests"
Event = tuple[str, dict[str, Any]] | str  # (event type, data object), or raw SSE bytes as text
_ids = itertools.count(1)


@dataclass(frozen=True)
class Received:
    body: dict[str, Any]
    headers: dict[str, str]  # names in lower case


def error_body(error_type: str, message: str) -> dict[str, Any]:
    """An error as the errors reference shows it."""
    return {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": f"req_fake{next(_ids):06d}",
    }


def message_events(
    texts: Sequence[str],
    *,
    model: str = "claude-haiku-4-5",
    stop_reason: str = "end_turn",
    input_tokens: int = 12,
    output_tokens: int | None = None,
    cache_creation: int = 0,
    cache_read: int = 0,
) -> list[Event]:
    """The events of one streamed answer made of `texts` (one text_delta each)."""
    message: dict[str, Any] = {
        "id": f"msg_fake{next(_ids):06d}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "cache_creation_input_tokens": cache_creation,
            "cache_read_input_tokens": cache_read,
            "output_tokens": 1,
        },
    }
    events: list[Event] = [
        ("message_start", {"type": "message_start", "message": message}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        ("ping", {"type": "ping"}),
    ]
    events += [text_delta(t) for t in texts]
    events += [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": len(texts) if output_tokens is None else output_tokens},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return events


def tool_use_events(
    calls: Sequence[tuple[str, str, Sequence[str]]],
    *,
    text: str = "",
    stop_reason: str = "tool_use",
    input_tokens: int = 40,
    output_tokens: int = 25,
    cache_creation: int = 0,
    cache_read: int = 0,
) -> list[Event]:
    """An answer that calls tools: `text` first (a text block, when given), then a
    ``tool_use`` block per call (id, name, the ``partial_json`` fragments of its input),
    as the streaming guide's tool use example shows them."""
    events = message_events(
        [text] if text else [],
        stop_reason=stop_reason,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_creation=cache_creation,
        cache_read=cache_read,
    )
    head, tail = events[:3], events[-3:]  # message_start, block 0 start, ping | stop, delta, end
    body: list[Event] = list(events[3:-3]) if text else []
    if not text:
        head = [head[0], head[2]]  # no text block: the calls start at index 0
        tail = tail[1:]
    first = 1 if text else 0
    for offset, (call_id, name, fragments) in enumerate(calls):
        index = first + offset
        start = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
        body.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start},
            )
        )
        body += [
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": fragment},
                },
            )
            for fragment in fragments
        ]
        body.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    return [*head, *body, *tail]


def text_delta(text: str) -> Event:
    return (
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
    )


def error_event(error_type: str, message: str) -> Event:
    return ("error", {"type": "error", "error": {"type": error_type, "message": message}})


def _sse(event: Event) -> bytes:
    if isinstance(event, str):
        return event.encode()
    name, data = event
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


@dataclass
class _Failure:
    status: int
    body: dict[str, Any] | str
    headers: dict[str, str]


@dataclass
class FakeAnthropic:
    """Anthropic's API on 127.0.0.1 (port 0); `base_url` is set once started."""

    api_key: str = API_KEY
    models: list[str] = field(default_factory=lambda: ["claude-haiku-4-5", "claude-sonnet-4-5"])
    received: list[Received] = field(default_factory=list)  # POST /v1/messages
    listed: list[dict[str, str]] = field(default_factory=list)  # GET /v1/models queries
    base_url: str = ""  # as `backends.<name>.base_url` takes it: no /v1
    # Model -> its context window in tokens; a longer prompt is refused (see above).
    context_windows: dict[str, int] = field(default_factory=dict)
    _events: list[Event] = field(default_factory=list)
    _cut: bool = False
    _hold: asyncio.Event | None = None
    streaming: asyncio.Event = field(default_factory=asyncio.Event)  # a stream has begun
    _failure: _Failure | None = None
    _runner: web.AppRunner | None = None

    # ---- scripting -------------------------------------------------------------

    def reply(self, *texts: str, **usage: Any) -> None:
        """Answer every call with a normal stream of `texts` (see `message_events`)."""
        self.stream(message_events(texts or ("Hello", " there", "!"), **usage))

    def stream(
        self, events: Sequence[Event], *, cut: bool = False, hold: asyncio.Event | None = None
    ) -> None:
        """Answer with these events; `cut`: then drop the connection mid-body; `hold`: send
        the headers, then wait for the event to be set before the first event."""
        self._events, self._cut, self._hold, self._failure = list(events), cut, hold, None

    def fail(
        self,
        status: int,
        error_type: str,
        message: str,
        headers: dict[str, str] | None = None,
        *,
        raw: str | None = None,
    ) -> None:
        """Answer with an error body (`raw`: this text instead of Anthropic's JSON)."""
        body: dict[str, Any] | str = error_body(error_type, message) if raw is None else raw
        self._failure = _Failure(status, body, dict(headers or {}))

    # ---- serving ---------------------------------------------------------------

    async def start(self) -> None:
        self.reply()
        app = web.Application()
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _refusal(self, request: web.Request) -> web.Response | None:
        """The API's own checks of every request, before anything scripted."""
        if request.headers.get("x-api-key") != self.api_key:
            return _error(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return _error(400, "invalid_request_error", "anthropic-version: header is required")
        return None

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            body = await request.json()
        except ValueError:
            body = None
        self.received.append(Received(body if isinstance(body, dict) else {}, headers))
        refused = self._refusal(request)
        if refused is not None:
            return refused
        if not isinstance(body, dict):
            return _error(400, "invalid_request_error", "body: not a JSON object")
        for key in ("model", "max_tokens", "messages"):
            if key not in body:
                return _error(400, "invalid_request_error", f"{key}: Field required")
        if not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1:
            return _error(400, "invalid_request_error", "max_tokens: must be at least 1")
        if not body["messages"]:
            return _error(
                400, "invalid_request_error", "messages: at least one message is required"
            )
        problem = _image_block_problem(body["messages"]) or _tool_problem(body)
        if problem:
            return _error(400, "invalid_request_error", problem)
        if body["model"] not in self.models:
            return _error(404, "not_found_error", f"model: {body['model']}")
        top_p = body.get("top_p")
        if isinstance(top_p, int | float) and not 0 <= top_p <= 1:
            message = "top_p: Input should be less than or equal to 1"
            return _error(400, "invalid_request_error", message)
        window = self.context_windows.get(body["model"])
        tokens = len(json.dumps(body["messages"])) // 4
        if window is not None and tokens > window:
            message = f"prompt is too long: {tokens} tokens > {window} maximum"
            return _error(400, "invalid_request_error", message)
        if self._failure is not None:
            return _scripted(self._failure)
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "request-id": "req_fake"}
        )
        await resp.prepare(request)
        self.streaming.set()
        if self._hold is not None:
            await self._hold.wait()
        for event in self._events:
            await resp.write(_sse(event))
        if self._cut:
            await resp.write(b'event: content_block_delta\ndata: {"type": "content_bl')
            assert request.transport is not None
            request.transport.close()  # mid-event, mid-chunk: the connection is gone
            return resp
        await resp.write_eof()
        return resp

    async def _models(self, request: web.Request) -> web.Response:
        self.listed.append(dict(request.query))
        refused = self._refusal(request)
        if refused is not None:
            return refused
        if self._failure is not None:
            return _scripted(self._failure)
        limit = int(request.query.get("limit", "20"))
        after = request.query.get("after_id")
        names = self.models[self.models.index(after) + 1 :] if after in self.models else self.models
        page = names[: max(1, min(limit, 1000))]
        data = [
            {
                "type": "model",
                "id": name,
                "display_name": name.replace("-", " ").title(),
                "created_at": "2025-10-01T00:00:00Z",
                "max_input_tokens": 200_000,
                "max_tokens": 64_000,
            }
            for name in page
        ]
        return web.json_response(
            {
                "data": data,
                "has_more": len(names) > len(page),
                "first_id": page[0] if page else None,
                "last_id": page[-1] if page else None,
            },
            headers={"request-id": "req_fake"},
        )


_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")


def _image_block_problem(messages: Any) -> str | None:
    """What the API's validation says of a malformed image block (Messages API reference,
    ``ImageBlockParam``: a ``base64`` source with a ``media_type`` of the four and
    base64 ``data``, or a ``url`` source), in its ``messages.i.content.j`` form; None."""
    for i, message in enumerate(messages if isinstance(messages, list) else ()):
        content = message.get("content") if isinstance(message, dict) else None
        for j, block in enumerate(content if isinstance(content, list) else ()):
            if not isinstance(block, dict) or block.get("type") != "image":
                continue
            where = f"messages.{i}.content.{j}.image.source"
            source = block.get("source") or {}
            if source.get("type") == "url" and isinstance(source.get("url"), str):
                continue
            if source.get("type") != "base64":
                return f"{where}: Input tag {source.get('type')!r} does not match 'base64', 'url'"
            if source.get("media_type") not in _MEDIA_TYPES:
                return (
                    f"{where}.base64.media_type: Input should be 'image/jpeg', 'image/png', "
                    "'image/gif' or 'image/webp'"
                )
            try:
                base64.b64decode(source.get("data") or "", validate=True)
            except ValueError:
                return f"{where}.base64.data: invalid base64 data"
    return None


_TOOL_CHOICES = ("auto", "any", "tool", "none")


def _tool_problem(body: dict[str, Any]) -> str | None:
    """What the API's validation says of tool definitions, a tool choice or tool turns it
    cannot take (the module doc's references), in its ``messages.i`` form; None."""
    tools = body.get("tools", [])
    for i, tool in enumerate(tools if isinstance(tools, list) else [None]):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            return f"tools.{i}.name: Field required"
        schema = tool.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            return f"tools.{i}.custom.input_schema.type: Input should be 'object'"
    choice = body.get("tool_choice")
    if choice is not None:
        if not isinstance(choice, dict) or choice.get("type") not in _TOOL_CHOICES:
            return "tool_choice: Input tag does not match 'auto', 'any', 'tool', 'none'"
        if choice["type"] == "tool" and not isinstance(choice.get("name"), str):
            return "tool_choice.tool.name: Field required"
    calls: list[str] = []
    for i, message in enumerate(body["messages"]):
        content = message.get("content") if isinstance(message, dict) else None
        blocks = [b for b in (content if isinstance(content, list) else []) if isinstance(b, dict)]
        results = [b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"]
        leading = [b.get("tool_use_id") for b in blocks[: len(calls)]]
        if calls and (message.get("role") != "user" or sorted(map(str, leading)) != sorted(calls)):
            return (
                f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
                f"immediately after: {', '.join(calls)}. Each `tool_use` block must have a "
                "corresponding `tool_result` block in the next message."
            )
        stray = [r for r in results if r not in calls]
        if stray:
            return (
                f"messages.{i}.content.0: unexpected `tool_use_id` found in `tool_result` "
                f"blocks: {stray[0]}. Each `tool_result` block must have a corresponding "
                "`tool_use` block in the previous message."
            )
        for j, block in enumerate(blocks):
            if block.get("type") == "tool_use" and not isinstance(block.get("input"), dict):
                where = f"messages.{i}.content.{j}.tool_use.input"
                return f"{where}: Input should be a valid dictionary"
        calls = [str(b.get("id")) for b in blocks if b.get("type") == "tool_use"]
    return None


def _error(status: int, error_type: str, message: str) -> web.Response:
    return web.json_response(
        error_body(error_type, message), status=status, headers={"request-id": "req_fake"}
    )


def _scripted(failure: _Failure) -> web.Response:
    headers = {"request-id": "req_fake", **failure.headers}
    if isinstance(failure.body, str):
        return web.Response(status=failure.status, text=failure.body, headers=headers)
    return web.json_response(failure.body, status=failure.status, headers=headers)
