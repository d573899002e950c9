"""The Anthropic Messages API's JSON, to and from the gateway's contract (no I/O here).

``POST /v1/messages`` as Anthropic's API reference has it (Messages, streaming
messages; anthropic-version 2023-06-01): a request becomes a `GenerateRequest`
(system prompt, text/image/tool_use/tool_result blocks, tools and tool_choice,
stop_sequences, sampling), every field type-checked and an unknown one refused
naming it; an answer becomes a ``message``, and a stream the API's events:
``message_start``, one ``content_block_*`` run per text or tool-use block,
``message_delta`` with the stop reason and usage, ``message_stop``. Errors are
``{"type": "error", "error": {"type", "message"}}`` (`error_body`).
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from modelyard.edges.openai_wire import http_status
from modelyard_client.errors import InvalidRequest, ModelyardError
from modelyard_client.v1 import common_pb2, gateway_pb2

_F = common_pb2
STOP_REASONS = {
    _F.FINISH_REASON_STOP: "end_turn",
    _F.FINISH_REASON_LENGTH: "max_tokens",
    _F.FINISH_REASON_TOOL_CALLS: "tool_use",
    _F.FINISH_REASON_CONTENT_FILTER: "refusal",
}
_FIELDS = {
    "model",
    "messages",
    "max_tokens",
    "system",
    "stop_sequences",
    "temperature",
    "top_p",
    "top_k",
    "stream",
    "tools",
    "tool_choice",
    "metadata",
    "service_tier",
}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
}


def _bad(path: str, problem: str) -> InvalidRequest:
    return InvalidRequest(f"{path}: {problem}", field=path)


def messages_request(body: dict[str, Any]) -> tuple[gateway_pb2.GenerateRequest, bool]:
    """(the request, stream?) of a Messages body."""
    for name in body:
        if name not in _FIELDS:
            raise _bad(name, "Extra inputs are not permitted")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("model", "Field required (a non-empty string)")
    request = gateway_pb2.GenerateRequest(model=model)
    tokens = body.get("max_tokens")
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        raise _bad("max_tokens", "Field required (an integer of at least 1)")
    params = request.params
    params.max_tokens = tokens
    chat = request.input.chat
    system = body.get("system")
    if system is not None:
        chat.messages.add(role="system", content=_text_of(system, "system"))
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages", "Field required (a non-empty array)")
    for i, message in enumerate(messages):
        _message(chat, message, f"messages[{i}]")
    for name, (low, high) in (("temperature", (0.0, 1.0)), ("top_p", (0.0, 1.0))):
        value = body.get(name)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _bad(name, "must be a number")
            if not low <= value <= high:
                raise _bad(name, f"{value} is not within [{low}, {high}]")
            setattr(params, name, float(value))
    top_k = body.get("top_k")
    if top_k is not None:
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise _bad("top_k", "must be an integer of at least 1")
        params.top_k = top_k
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise _bad("stop_sequences", "must be an array of strings")
        params.stop.extend(stops)
    for i, tool in enumerate(body.get("tools") or ()):
        _tool(params.tools.add(), tool, f"tools[{i}]")
    if body.get("tool_choice") is not None:
        params.tool_choice = _tool_choice(body["tool_choice"])
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        request.user = metadata["user_id"]
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise _bad("stream", "must be a boolean")
    return request, stream


def _text_of(value: Any, path: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(
        isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
        for b in value
    ):
        return "\n".join(b["text"] for b in value)
    raise _bad(path, "must be a string or an array of text blocks")


def _message(chat: common_pb2.ChatMessages, message: Any, where: str) -> None:
    if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
        raise _bad(f"{where}.role", "must be 'user' or 'assistant'")
    role, content = message["role"], message.get("content")
    if isinstance(content, str):
        chat.messages.add(role=role, content=content)
        return
    if not isinstance(content, list):
        raise _bad(f"{where}.content", "must be a string or an array of content blocks")
    out = common_pb2.ChatMessage(role=role)
    results: list[common_pb2.ChatMessage] = []  # tool results: "tool" messages, first
    for j, block in enumerate(content):
        path = f"{where}.content[{j}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text" and isinstance(block.get("text"), str):
            out.parts.add(text=block["text"])
        elif kind == "image" and role == "user":
            out.parts.add(image=_image(block.get("source"), f"{path}.source"))
        elif kind == "tool_use" and role == "assistant":
            arguments = block.get("input", {})
            if not isinstance(arguments, dict) or not isinstance(block.get("name"), str):
                raise _bad(path, "a tool_use block needs a name and an input object")
            out.tool_calls.add(
                id=str(block.get("id") or ""),
                name=block["name"],
                arguments_json=json.dumps(arguments),
            )
        elif kind == "tool_result" and role == "user":
            if not isinstance(block.get("tool_use_id"), str):
                raise _bad(f"{path}.tool_use_id", "Field required")
            text = _text_of(block.get("content", ""), f"{path}.content")
            if block.get("is_error"):
                text = f"[the tool failed] {text}"
            results.append(
                common_pb2.ChatMessage(role="tool", content=text, tool_call_id=block["tool_use_id"])
            )
        else:
            raise _bad(path, f"a {kind!r} block is not taken in a {role} message")
    chat.messages.extend(results)
    if out.parts or out.tool_calls:
        if all(p.WhichOneof("part") == "text" for p in out.parts):  # text only: plain content
            out.content = "".join(p.text for p in out.parts)
            del out.parts[:]
        chat.messages.append(out)


def _image(source: Any, path: str) -> common_pb2.Image:
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "base64" and isinstance(source.get("data"), str):
        media = str(source.get("media_type") or "")
        return common_pb2.Image(url=f"data:{media};base64,{source['data']}", mime_type=media)
    if kind == "url" and isinstance(source.get("url"), str):
        return common_pb2.Image(url=source["url"])
    raise _bad(path, "must be {type: base64, media_type, data} or {type: url, url}")


def _tool(out: common_pb2.ToolDefinition, tool: Any, where: str) -> None:
    if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
        raise _bad(where, "a tool needs a name and an input_schema")
    out.name = tool["name"]
    out.description = str(tool.get("description") or "")
    schema = tool.get("input_schema", {"type": "object", "properties": {}})
    if not isinstance(schema, dict):
        raise _bad(f"{where}.input_schema", "must be a JSON Schema object")
    out.parameters_json = json.dumps(schema)


def _tool_choice(choice: Any) -> str:
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind in ("auto", "none"):
        return str(kind)
    if kind == "any":
        return "required"
    if kind == "tool" and isinstance(choice.get("name"), str):
        return str(choice["name"])
    raise _bad("tool_choice", "must be {type: auto|any|none} or {type: tool, name}")


# ---- answers ------------------------------------------------------------------------


def _usage(usage: common_pb2.Usage) -> dict[str, int]:
    return {
        "input_tokens": usage.input_tokens - usage.cached_input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_read_input_tokens": usage.cached_input_tokens,
        "cache_creation_input_tokens": 0,
    }


def _tool_blocks(calls: Any) -> list[dict[str, Any]]:
    return [
        {"type": "tool_use", "id": c.id, "name": c.name, "input": _arguments(c.arguments_json)}
        for c in calls
    ]


def _arguments(text: str) -> Any:
    try:
        return json.loads(text or "{}")
    except ValueError:
        return {}


def message_json(answer: gateway_pb2.GenerateResponse) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if answer.text:
        content.append({"type": "text", "text": answer.text})
    content += _tool_blocks(answer.tool_calls)
    return {
        "id": f"msg_{answer.request_id}",
        "type": "message",
        "role": "assistant",
        "model": answer.model_id,
        "content": content,
        "stop_reason": STOP_REASONS.get(answer.finish_reason, "end_turn"),
        "stop_sequence": None,
        "usage": _usage(answer.usage),
    }


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: ".encode() + msgspec.json.encode({"type": kind, **data}) + b"\n\n"


class EventWriter:
    """One streamed answer's events, chunk by chunk (`events`)."""

    def __init__(self) -> None:
        self._started = False
        self._text_open = False
        self._blocks = 0

    def events(self, chunk: gateway_pb2.GenerateChunk) -> bytes:
        out = b""
        if not self._started:
            self._started = True
            message: dict[str, Any] = {
                "id": f"msg_{chunk.request_id}",
                "type": "message",
                "role": "assistant",
                "model": chunk.model_id,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            }
            out += _event("message_start", {"message": message})
        if chunk.text:
            if not self._text_open:
                self._text_open = True
                block = {"type": "text", "text": ""}
                out += _event(
                    "content_block_start", {"index": self._blocks, "content_block": block}
                )
            delta = {"type": "text_delta", "text": chunk.text}
            out += _event("content_block_delta", {"index": self._blocks, "delta": delta})
        if chunk.finish_reason:
            out += self._close_text()
            for block in _tool_blocks(chunk.tool_calls):
                arguments = json.dumps(block["input"])
                start = {**block, "input": {}}
                out += _event(
                    "content_block_start", {"index": self._blocks, "content_block": start}
                )
                delta = {"type": "input_json_delta", "partial_json": arguments}
                out += _event("content_block_delta", {"index": self._blocks, "delta": delta})
                out += _event("content_block_stop", {"index": self._blocks})
                self._blocks += 1
            stop = STOP_REASONS.get(chunk.finish_reason, "end_turn")
            out += _event(
                "message_delta",
                {
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": _usage(chunk.usage),
                },
            )
            out += _event("message_stop", {})
        return out

    def _start(self, block: dict[str, Any]) -> bytes:
        return _event("content_block_start", {"index": self._blocks, "content_block": block})

    def _close_text(self) -> bytes:
        if not self._text_open:
            return b""
        self._text_open = False
        self._blocks += 1
        return _event("content_block_stop", {"index": self._blocks - 1})


def error_event(err: ModelyardError) -> bytes:
    return _event("error", {"error": error_body(err)["error"]})


def error_body(err: ModelyardError) -> dict[str, Any]:
    status, _ = http_status(err)
    kind = _ERROR_TYPES.get(status, "overloaded_error" if status == 503 else "api_error")
    return {"type": "error", "error": {"type": kind, "message": err.message}}


def anthropic_status(err: ModelyardError) -> int:
    """The HTTP status the Anthropic API gives `err` (529 for an overloaded upstream)."""
    status, _ = http_status(err)
    return 529 if status == 503 else status
