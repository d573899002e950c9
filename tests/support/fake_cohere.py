"""A fake Cohere API for the cohere engine's tests: ``POST /v2/chat``, streamed, and
``POST /v2/embed`` (its reference in `FakeCohere._embed`).

It follows Cohere's published API reference, Chat v2 (API version v2, the
default; pages read 2026-12-01):

- the request: https://docs.cohere.com/v2/reference/chat-stream (``model``,
  ``messages``, ``max_tokens``, ``temperature``, ``p``, ``k``,
  ``stop_sequences``, ``seed``, ``response_format``, ``stream: true``), with
  ``Authorization: Bearer <key>``;
- the stream: https://docs.cohere.com/v2/docs/streaming, server-sent events
  ``event: <type>`` / ``data: {"type": <type>, ...}``: ``message-start``,
  ``content-start``, ``content-delta`` (``delta.message.content.text``),
  ``content-end``, ``message-end`` (``delta.finish_reason`` COMPLETE,
  STOP_SEQUENCE, MAX_TOKENS, TOOL_CALL, ERROR or TIMEOUT, with ``delta.error``
  on ERROR; ``delta.usage.billed_units`` and ``delta.usage.tokens``, each with
  ``input_tokens`` and ``output_tokens``);
- tools (https://docs.cohere.com/v2/docs/tool-use-overview and
  https://docs.cohere.com/v2/docs/tool-use-streaming, read 2026-12-02; event
  shapes as cohere-python's generated ``ChatToolCallStartEventDeltaMessage`` and
  ``ChatToolCallDeltaEventDeltaMessageToolCalls`` types have them): ``tools``
  ``[{"type": "function", "function": {"name", "description", "parameters"}}]``,
  ``tool_choice`` ``REQUIRED`` or ``NONE``, assistant messages with ``tool_plan``
  and ``tool_calls`` (``{"id", "type": "function", "function": {"name",
  "arguments"}}``), ``tool`` messages with ``tool_call_id`` and ``content``
  (checked, 400 otherwise); a streamed tool step is ``tool-plan-delta`` events
  (``delta.message.tool_plan``), then per call ``tool-call-start`` (``index``,
  ``delta.message.tool_calls`` one object: ``id``, ``type``, ``function.name``,
  ``function.arguments`` ""), ``tool-call-delta`` (``function.arguments``
  pieces) and ``tool-call-end``, then ``message-end`` with ``TOOL_CALL``
  (`tool_call_events`);
- failures: https://docs.cohere.com/reference/errors, a JSON body
  ``{"message": "..."}`` (with an ``id`` beside it on some) and the status:
  400 "invalid request: ...", "too many tokens: ..."; 401 "no api key
  supplied", "invalid api token"; 402 payment required; 404 "model 'x' not
  found, ..."; 429 "You are past the per minute request limit, ..."; 499
  "request cancelled"; 500; 503.

Unscripted, it answers every request for a model it serves with a short
stream, refuses a missing or wrong key with 401 and an unknown model with
404, as Cohere does. A test scripts other answers (`answer`, `fail`,
`delay`, `cut_after`, `drop_after`) and reads what was sent (`bodies`, `headers`).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Event = dict[str, Any] | str  # an event object, or raw `data` text (``[DONE]``, not JSON)

MODEL_NOT_FOUND = (
    "model '{}' not found, make sure the correct model ID was used and that you have "
    "access to the model."
)


def message_start(message_id: str = "c14c80c3-18eb-4519-9460-6c92edd8cfb4") -> dict[str, Any]:
    return {
        "id": message_id,
        "type": "message-start",
        "delta": {
            "message": {
                "role": "assistant",
                "content": [],
                "tool_plan": "",
                "tool_calls": [],
                "citations": [],
            }
        },
    }


def content_start() -> dict[str, Any]:
    return {
        "type": "content-start",
        "index": 0,
        "delta": {"message": {"content": {"type": "text", "text": ""}}},
    }


def content_delta(text: str) -> dict[str, Any]:
    return {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": text}}}}


def content_end() -> dict[str, Any]:
    return {"type": "content-end", "index": 0}


def message_end(
    finish_reason: str = "COMPLETE",
    *,
    billed: tuple[int, int] | None = (5, 3),
    tokens: tuple[int, int] | None = (71, 3),
    error: str | None = None,
) -> dict[str, Any]:
    """The last event; `billed` and `tokens` are (input, output) counts, None leaves one out."""
    usage: dict[str, Any] = {}
    if billed is not None:
        usage["billed_units"] = {"input_tokens": billed[0], "output_tokens": billed[1]}
    if tokens is not None:
        usage["tokens"] = {"input_tokens": tokens[0], "output_tokens": tokens[1]}
    delta: dict[str, Any] = {"finish_reason": finish_reason, "usage": usage}
    if error is not None:
        delta["error"] = error
    return {"type": "message-end", "delta": delta}


def stream_events(texts: Sequence[str], end: Event | None = None) -> list[Event]:
    """A whole answer as Cohere streams it: start, the text deltas, content-end, message-end."""
    return [
        message_start(),
        content_start(),
        *(content_delta(t) for t in texts),
        content_end(),
        end if end is not None else message_end(),
    ]


def tool_call_events(
    calls: Sequence[tuple[str, str, Sequence[str]]],
    *,
    plan: Sequence[str] = (),
    end: Event | None = None,
) -> list[Event]:
    """A tool calling step as Cohere streams it: the plan's deltas, then each call's
    start (id, name), its argument fragments and its end; message-end ``TOOL_CALL``."""
    events: list[Event] = [message_start()]
    events += [
        {"type": "tool-plan-delta", "delta": {"message": {"tool_plan": piece}}} for piece in plan
    ]
    for index, (call_id, name, fragments) in enumerate(calls):
        start = {"id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
        events.append(
            {"type": "tool-call-start", "index": index, "delta": {"message": {"tool_calls": start}}}
        )
        events += [
            {
                "type": "tool-call-delta",
                "index": index,
                "delta": {"message": {"tool_calls": {"function": {"arguments": fragment}}}},
            }
            for fragment in fragments
        ]
        events.append({"type": "tool-call-end", "index": index})
    events.append(end if end is not None else message_end("TOOL_CALL", billed=(40, 20)))
    return events


def _tool_problem(body: dict[str, Any]) -> str | None:
    """What Cohere says of tools, a tool choice or tool messages it cannot take; None."""
    tools = body.get("tools", [])
    for i, tool in enumerate(tools if isinstance(tools, list) else [None]):
        function = tool.get("function") if isinstance(tool, dict) else None
        if tool is None or tool.get("type") != "function" or not isinstance(function, dict):
            return f"tools[{i}]: type must be 'function' with a function object"
        if not isinstance(function.get("name"), str) or not function["name"]:
            return f"tools[{i}].function.name is required"
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            return f"tools[{i}].function.parameters must be a JSON schema object"
    if "tool_choice" in body and body["tool_choice"] not in ("REQUIRED", "NONE"):
        return f"tool_choice must be one of REQUIRED, NONE, not {body['tool_choice']!r}"
    calls: set[str] = set()
    for i, message in enumerate(body.get("messages") or []):
        role = message.get("role")
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            if call.get("type") != "function" or not call.get("id") or not function.get("name"):
                return f"messages[{i}].tool_calls: each needs an id, type 'function' and a name"
            try:
                json.loads(function.get("arguments") or "")
            except ValueError:
                return f"messages[{i}].tool_calls: arguments must be a JSON string"
            calls.add(call["id"])
        if role == "assistant" and "content" not in message and not message.get("tool_calls"):
            return f"messages[{i}]: an assistant message needs content or tool_calls"
        if role == "tool":
            if message.get("tool_call_id") not in calls:
                return f"messages[{i}].tool_call_id: no tool call with this id was made"
            if not isinstance(message.get("content"), str | list):
                return f"messages[{i}].content is required"
    return None


def _content_problem(messages: Any) -> str | None:
    """What Cohere says of a content array it cannot read (Chat v2: a string, or a list of
    ``{"type": "text", "text"}`` and, in user messages, ``{"type": "image_url",
    "image_url": {"url"}}`` with a base64 data URL or a web URL); None when all are fine."""
    for i, message in enumerate(messages if isinstance(messages, list) else ()):
        content = message.get("content")
        if isinstance(content, str) or (content is None and message.get("tool_calls")):
            continue
        for j, item in enumerate(content if isinstance(content, list) else [None]):
            where = f"messages[{i}].content[{j}]"
            kind = item.get("type") if isinstance(item, dict) else None
            if kind == "text" and isinstance(item.get("text"), str):
                continue
            if kind != "image_url" or message.get("role") != "user":
                return f"{where}: unsupported content type {kind!r}"
            url = (item.get("image_url") or {}).get("url")
            if not isinstance(url, str) or not url.startswith(("data:image/", "https://")):
                return f"{where}.image_url.url: must be a base64 data URL or a URL"
            if url.startswith("data:"):
                try:
                    base64.b64decode(url.partition(",")[2], validate=True)
                except ValueError:
                    return f"{where}.image_url.url: invalid base64 image data"
    return None


def embed_vector(text: str, length: int = 1536) -> list[float]:
    """The fake's Embed vector of `text`: the same text, the same vector."""
    seed = sum(ord(c) for c in text) % 97
    return [round(((seed + i) % 11) / 10 - 0.5, 3) for i in range(length)]


def sse(event: Event) -> bytes:
    if isinstance(event, str):
        return f"data: {event}\n\n".encode()
    return f"event: {event.get('type', 'message')}\ndata: {json.dumps(event)}\n\n".encode()


@dataclass
class FakeCohere:
    """Cohere's Chat v2 endpoint on 127.0.0.1, on a free port."""

    models: list[str] = field(default_factory=lambda: ["command-a-03-2025"])
    api_keys: set[str] = field(default_factory=lambda: {"co-test-key"})  # keys it accepts
    bodies: list[dict[str, Any]] = field(default_factory=list)  # chat requests received
    headers: list[dict[str, str]] = field(default_factory=list)
    received: asyncio.Event = field(default_factory=asyncio.Event)  # set at the first request
    url: str = ""  # base URL, as `base_url` takes it (no /v2)
    _events: list[Event] = field(default_factory=lambda: stream_events(["Hello", ", world"]))
    _failure: tuple[int, dict[str, Any] | str, dict[str, str]] | None = None
    _cut_after: int | None = None
    _delay_s: float = 0.0
    _drop_after: int | None = None
    _runner: web.AppRunner | None = None
    # Embed (POST /v2/embed): the bodies received, and failures scripted for the next calls.
    embed_bodies: list[dict[str, Any]] = field(default_factory=list)
    embed_models: list[str] = field(default_factory=lambda: ["embed-v4.0", "embed-english-v3.0"])
    _embed_failures: list[tuple[int, dict[str, Any], dict[str, str]]] = field(default_factory=list)

    # ---- scripting -------------------------------------------------------------

    def answer(self, events: Sequence[Event]) -> None:
        """Stream these events (see `stream_events`) to every chat request."""
        self._events, self._failure = list(events), None

    def fail(
        self, status: int, body: dict[str, Any] | str, headers: dict[str, str] | None = None
    ) -> None:
        """Answer every chat request with this status, JSON body (or raw text) and headers."""
        self._failure = (status, body, headers or {})

    def delay(self, seconds: float) -> None:
        """Wait this long, headers unsent, before answering each chat request."""
        self._delay_s = seconds

    def cut_after(self, events: int) -> None:
        """Send only the first `events` events of the answer, then end the body cleanly."""
        self._cut_after = events

    def drop_after(self, events: int) -> None:
        """Send the first `events` events, then drop the connection mid-body."""
        self._drop_after = events

    # ---- the API ---------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.bodies.append(body)
        self.headers.append(dict(request.headers))
        self.received.set()
        if self._delay_s:
            await asyncio.sleep(self._delay_s)
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not auth[len("Bearer ") :]:
            return web.json_response({"message": "no api key supplied"}, status=401)
        if auth[len("Bearer ") :] not in self.api_keys:
            return web.json_response({"message": "invalid api token"}, status=401)
        if self._failure is not None:
            status, answer, headers = self._failure
            if isinstance(answer, str):
                return web.Response(status=status, text=answer, headers=headers)
            return web.json_response(answer, status=status, headers=headers)
        if not body.get("model"):
            return web.json_response(
                {"message": "a model parameter is required for this endpoint."}, status=400
            )
        if body["model"] not in self.models:
            return web.json_response(
                {"id": "4b2c5d2e", "message": MODEL_NOT_FOUND.format(body["model"])}, status=404
            )
        problem = _content_problem(body.get("messages")) or _tool_problem(body)
        if problem:
            return web.json_response({"message": f"invalid request: {problem}"}, status=400)
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)
        events = self._events
        limit = self._drop_after if self._drop_after is not None else self._cut_after
        for event in events if limit is None else events[:limit]:
            await resp.write(sse(event))
        if self._drop_after is not None:
            assert request.transport is not None
            request.transport.close()  # mid-body: no chunked terminator
            return resp
        await resp.write_eof()
        return resp

    def fail_embed(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        """Answer the next Embed call with this status, JSON body and headers."""
        self._embed_failures.append((status, body, headers or {}))

    async def _embed(self, request: web.Request) -> web.Response:
        """Embed API v2 (https://docs.cohere.com/reference/embed, read 2026-12-02): ``model``,
        ``input_type``, ``texts`` (at most 96), ``embedding_types``, ``output_dimension``
        (256, 512, 1024, 1536; embed-v4.0 only); answered ``embeddings.float`` (one vector
        per text, `embed_vector`), ``texts``, ``meta.billed_units.input_tokens`` (here one
        per word) and ``response_type: "embeddings_by_type"``."""
        body = await request.json()
        self.embed_bodies.append(body)
        auth = request.headers.get("Authorization", "")
        if auth.removeprefix("Bearer ") not in self.api_keys:
            return web.json_response({"message": "invalid api token"}, status=401)
        if self._embed_failures:
            status, answer, headers = self._embed_failures.pop(0)
            return web.json_response(answer, status=status, headers=headers)
        model, texts = body.get("model"), body.get("texts")
        if model not in self.embed_models:
            return web.json_response(
                {"id": "9e1f0a77", "message": MODEL_NOT_FOUND.format(model)}, status=404
            )
        if not body.get("input_type"):
            return web.json_response(
                {"message": "invalid request: input_type is required for embed models v3 and "
                 "higher."},
                status=400,
            )  # fmt: skip
        if not isinstance(texts, list) or not 0 < len(texts) <= 96:
            return web.json_response(
                {"message": "invalid request: texts must be a list of 1 to 96 strings."},
                status=400,
            )
        length = body.get("output_dimension") or 1536
        if "output_dimension" in body and (
            model != "embed-v4.0" or length not in (256, 512, 1024, 1536)
        ):
            return web.json_response(
                {"message": f"invalid request: output_dimension {length} is not supported "
                 f"for model '{model}'."},
                status=400,
            )  # fmt: skip
        billed = sum(len(str(t).split()) for t in texts)
        return web.json_response(
            {
                "id": "5807ee2e-0cda-445a-9ec8-864c60a06606",
                "embeddings": {"float": [embed_vector(str(t), length) for t in texts]},
                "texts": texts,
                "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": billed}},
                "response_type": "embeddings_by_type",
            }
        )

    # ---- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v2/chat", self._chat)
        app.router.add_post("/v2/embed", self._embed)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
