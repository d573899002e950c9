"""The OpenAI HTTP API's JSON, to and from the gateway's contract (no I/O here).

Requests: a chat completion (``POST /v1/chat/completions``), a completion
(``POST /v1/completions``) or an embeddings request becomes a `GenerateRequest` or
an `EmbedRequest`; every field is type-checked and a field the API has but the
gateway cannot honour, or one the API does not have, is refused naming it (as
OpenAI refuses ``Unrecognized request argument supplied: x``), before any model
is called. Answers: a `GenerateResponse` becomes a ``chat.completion``, each
`GenerateChunk` a ``chat.completion.chunk`` (the usage chunk last, when
``stream_options.include_usage``), as the OpenAI API reference's chat object
describes them (openai-openapi, 2025). Errors: `error_body` and `http_status`.
"""

from __future__ import annotations

import base64
import json
import struct
import time
from typing import Any

import grpc
import msgspec

from modelyard_client.errors import InvalidRequest, ModelyardError, RequestTooLarge
from modelyard_client.v1 import common_pb2, gateway_pb2

_F = common_pb2
FINISH = {
    _F.FINISH_REASON_STOP: "stop",
    _F.FINISH_REASON_LENGTH: "length",
    _F.FINISH_REASON_TOOL_CALLS: "tool_calls",
    _F.FINISH_REASON_CONTENT_FILTER: "content_filter",
}
ROLES = ("system", "developer", "user", "assistant", "tool")
# Fields the API has that change nothing when left at their defaults; any other value
# is refused (the gateway cannot honour it), never silently dropped.
_NEUTRAL = {
    "n": (1, None),
    "presence_penalty": (0, 0.0, None),
    "frequency_penalty": (0, 0.0, None),
    "logprobs": (False, None),
    "top_logprobs": (0, None),
    "logit_bias": (None,),
    "parallel_tool_calls": (True, None),
    "store": (False, None),
    "service_tier": ("auto", "default", None),
    "metadata": (None,),
}
_CHAT_FIELDS = {
    "model",
    "messages",
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "seed",
    "tools",
    "tool_choice",
    "response_format",
    "user",
    *_NEUTRAL,
}
_COMPLETION_FIELDS = {
    "model",
    "prompt",
    "stream",
    "stream_options",
    "max_tokens",
    "temperature",
    "top_p",
    "stop",
    "seed",
    "user",
    "n",
    "presence_penalty",
    "frequency_penalty",
    "logprobs",
    "logit_bias",
    "echo",
    "suffix",
    "best_of",
}


def parse_json(body: bytes, max_bytes: int) -> dict[str, Any]:
    """The request's JSON object; `RequestTooLarge` past `max_bytes`, `InvalidRequest` if it is
    not JSON or not an object."""
    if len(body) > max_bytes:
        raise RequestTooLarge(
            f"the request body is {len(body)} bytes; the limit is {max_bytes} bytes"
        )
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise InvalidRequest(f"the request body is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return value


# ---- requests -------------------------------------------------------------------------


def chat_request(body: dict[str, Any]) -> tuple[gateway_pb2.GenerateRequest, bool, bool]:
    """(the request, stream?, include usage in the stream?) of a chat completion body."""
    _known(body, _CHAT_FIELDS)
    request = gateway_pb2.GenerateRequest(model=_text(body, "model", required=True))
    messages = _field(body, "messages", list, required=True)
    if not messages:
        raise InvalidRequest("messages: must hold at least one message", field="messages")
    chat = request.input.chat
    for i, message in enumerate(messages):
        _message(chat.messages.add(), message, f"messages[{i}]")
    params = request.params
    tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if tokens is not None:
        params.max_tokens = _int(tokens, "max_completion_tokens", low=1)
    _sampling(body, params)
    if body.get("tools") is not None:
        for i, tool in enumerate(_field(body, "tools", list)):
            _tool(params.tools.add(), tool, f"tools[{i}]")
    if body.get("tool_choice") is not None:
        params.tool_choice = _tool_choice(body["tool_choice"])
    if body.get("response_format") is not None:
        _response_format(body["response_format"], params)
    if body.get("user") is not None:
        request.user = _text(body, "user")
    stream, usage = _stream(body)
    return request, stream, usage


def completion_request(body: dict[str, Any]) -> tuple[gateway_pb2.GenerateRequest, bool, bool]:
    """(the request, stream?, include usage?) of a legacy completion body: its prompt is
    the input's text."""
    _known(body, _COMPLETION_FIELDS)
    for name in ("echo", "suffix", "best_of"):
        if body.get(name) not in (None, False, 1, ""):
            raise _unsupported(name)
    request = gateway_pb2.GenerateRequest(model=_text(body, "model", required=True))
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise InvalidRequest("prompt: must be a string", field="prompt")
    request.input.text = prompt
    if body.get("max_tokens") is not None:
        request.params.max_tokens = _int(body["max_tokens"], "max_tokens", low=1)
    _sampling(body, request.params)
    if body.get("user") is not None:
        request.user = _text(body, "user")
    stream, usage = _stream(body)
    return request, stream, usage


def embed_request(body: dict[str, Any]) -> tuple[gateway_pb2.EmbedRequest, str]:
    """(the request, its encoding_format: "float" or "base64")."""
    _known(body, {"model", "input", "dimensions", "encoding_format", "user"})
    request = gateway_pb2.EmbedRequest(model=_text(body, "model", required=True))
    given = body.get("input")
    inputs = [given] if isinstance(given, str) else given
    if not isinstance(inputs, list) or not all(isinstance(x, str) for x in inputs):
        raise InvalidRequest(
            "input: must be a string or an array of strings (token arrays are not taken)",
            field="input",
        )
    request.inputs.extend(inputs)
    if body.get("dimensions") is not None:
        request.dimensions = _int(body["dimensions"], "dimensions", low=1)
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise InvalidRequest(
            "encoding_format: must be 'float' or 'base64'", field="encoding_format"
        )
    return request, encoding


def _stream(body: dict[str, Any]) -> tuple[bool, bool]:
    stream = bool(_field(body, "stream", bool) or False)
    options = _field(body, "stream_options", dict) or {}
    _known(options, {"include_usage", "include_obfuscation"}, "stream_options.")
    return stream, bool(options.get("include_usage"))


def _sampling(body: dict[str, Any], params: common_pb2.GenerationParams) -> None:
    for name, (low, high) in (("temperature", (0.0, 2.0)), ("top_p", (0.0, 1.0))):
        if body.get(name) is not None:
            value = body[name]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidRequest(f"{name}: must be a number", field=name)
            if not low <= value <= high:
                raise InvalidRequest(f"{name}: {value} is not within [{low}, {high}]", field=name)
            setattr(params, name, float(value))
    if body.get("seed") is not None:
        params.seed = _int(body["seed"], "seed")
    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise InvalidRequest("stop: must be a string or an array of strings", field="stop")
        params.stop.extend(stops)
    for name, neutral in _NEUTRAL.items():
        if name in body and body[name] not in neutral:
            raise _unsupported(name)


def _message(out: common_pb2.ChatMessage, message: Any, where: str) -> None:
    if not isinstance(message, dict):
        raise InvalidRequest(f"{where}: must be an object", field=where)
    _known(
        message, {"role", "content", "name", "tool_calls", "tool_call_id", "refusal"}, where + "."
    )
    role = message.get("role")
    if role not in ROLES:
        raise InvalidRequest(
            f"{where}.role: must be one of {', '.join(ROLES)}", field=f"{where}.role"
        )
    out.role = "system" if role == "developer" else role
    content = message.get("content")
    if isinstance(content, str):
        out.content = content
    elif isinstance(content, list):
        for j, part in enumerate(content):
            _part(out, part, f"{where}.content[{j}]")
    elif content is not None:
        raise InvalidRequest(
            f"{where}.content: must be a string or an array", field=f"{where}.content"
        )
    if message.get("name") is not None:
        out.name = _text(message, "name", where=where)
    for j, call in enumerate(message.get("tool_calls") or ()):
        name = f"{where}.tool_calls[{j}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            raise InvalidRequest(f"{name}.function: must be an object", field=f"{name}.function")
        out.tool_calls.add(
            id=str(call.get("id") or ""),
            name=str(function.get("name") or ""),
            arguments_json=str(function.get("arguments") or "{}"),
        )
    if message.get("tool_call_id") is not None:
        out.tool_call_id = _text(message, "tool_call_id", where=where)


def _part(out: common_pb2.ChatMessage, part: Any, where: str) -> None:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text" and isinstance(part.get("text"), str):
        out.parts.add(text=part["text"])
    elif kind == "image_url" and isinstance(part.get("image_url"), dict):
        url = part["image_url"].get("url")
        if not isinstance(url, str):
            raise InvalidRequest(
                f"{where}.image_url.url: must be a string", field=f"{where}.image_url"
            )
        out.parts.add(image=common_pb2.Image(url=url))
    else:
        raise InvalidRequest(
            f"{where}: a content part must be {{type: text, text}} or {{type: image_url, "
            "image_url: {url}}}",
            field=where,
        )


def _tool(out: common_pb2.ToolDefinition, tool: Any, where: str) -> None:
    function = tool.get("function") if isinstance(tool, dict) else None
    if (
        not isinstance(tool, dict)
        or tool.get("type") != "function"
        or not isinstance(function, dict)
    ):
        raise InvalidRequest(f"{where}: must be {{type: function, function: {{...}}}}", field=where)
    out.name = _text(function, "name", required=True, where=f"{where}.function")
    out.description = _text(function, "description", where=f"{where}.function")
    parameters = function.get("parameters", {"type": "object", "properties": {}})
    out.parameters_json = json.dumps(parameters)


def _tool_choice(choice: Any) -> str:
    if choice in ("auto", "none", "required"):
        return str(choice)
    function = choice.get("function") if isinstance(choice, dict) else None
    if isinstance(function, dict) and isinstance(function.get("name"), str):
        return str(function["name"])
    raise InvalidRequest(
        "tool_choice: must be auto, none, required or {type: function, function: {name}}",
        field="tool_choice",
    )


def _response_format(value: Any, params: common_pb2.GenerationParams) -> None:
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return
    if kind == "json_object":
        params.response_schema_json = json.dumps({"type": "object"})
        return
    schema = value.get("json_schema") if kind == "json_schema" else None
    if not isinstance(schema, dict) or not isinstance(schema.get("schema"), dict):
        raise InvalidRequest(
            "response_format: must be {type: text}, {type: json_object} or {type: json_schema, "
            "json_schema: {name, schema}}",
            field="response_format",
        )
    params.response_schema_json = json.dumps(schema["schema"])


def _known(body: dict[str, Any], allowed: set[str], prefix: str = "") -> None:
    for name in body:
        if name not in allowed:
            raise InvalidRequest(
                f"Unrecognized request argument supplied: {prefix}{name}", field=prefix + name
            )


def _unsupported(name: str) -> InvalidRequest:
    return InvalidRequest(f"{name}: this gateway does not honour it (leave it unset)", field=name)


def _field(body: dict[str, Any], name: str, kind: type, *, required: bool = False) -> Any:
    value = body.get(name)
    if value is None:
        if required:
            raise InvalidRequest(f"{name}: is required", field=name)
        return None
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise InvalidRequest(f"{name}: must be {_KIND_NAMES[kind]}", field=name)
    return value


_KIND_NAMES = {str: "a string", list: "an array", dict: "an object", bool: "a boolean"}


def _text(body: dict[str, Any], name: str, *, required: bool = False, where: str = "") -> str:
    path = f"{where}.{name}" if where else name
    value = body.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise InvalidRequest(f"{path}: must be a non-empty string", field=path)
    return value


def _int(value: Any, name: str, low: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{name}: must be an integer", field=name)
    if low is not None and value < low:
        raise InvalidRequest(f"{name}: must be at least {low}", field=name)
    return value


# ---- answers ----------------------------------------------------------------------------


def completion_id(request_id: str) -> str:
    return f"chatcmpl-{request_id}"


def usage_json(usage: common_pb2.Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens},
    }


def tool_calls_json(calls: Any) -> list[dict[str, Any]]:
    return [
        {
            "index": i,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": call.arguments_json},
        }
        for i, call in enumerate(calls)
    ]


def chat_completion(answer: gateway_pb2.GenerateResponse) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": answer.text or None}
    if answer.tool_calls:
        message["tool_calls"] = [
            {k: v for k, v in c.items() if k != "index"} for c in tool_calls_json(answer.tool_calls)
        ]
    return {
        "id": completion_id(answer.request_id),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": answer.model_id,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": FINISH.get(answer.finish_reason, "stop"),
                "logprobs": None,
            }
        ],
        "usage": usage_json(answer.usage),
    }


def text_completion(answer: gateway_pb2.GenerateResponse) -> dict[str, Any]:
    return {
        "id": f"cmpl-{answer.request_id}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": answer.model_id,
        "choices": [
            {
                "index": 0,
                "text": answer.text,
                "finish_reason": FINISH.get(answer.finish_reason, "stop"),
                "logprobs": None,
            }
        ],
        "usage": usage_json(answer.usage),
    }


class ChunkWriter:
    """One streamed answer's SSE events, chunk by chunk (`events`)."""

    def __init__(self, include_usage: bool, chat: bool = True) -> None:
        self._include_usage = include_usage
        self._chat = chat
        self._head: dict[str, Any] = {}
        self._started = False

    def _frame(self, choices: list[dict[str, Any]], usage: Any = None) -> bytes:
        obj = {**self._head, "choices": choices}
        if usage is not None:
            obj["usage"] = usage
        return b"data: " + msgspec.json.encode(obj) + b"\n\n"  # a tenth of json.dumps' cost

    def events(self, chunk: gateway_pb2.GenerateChunk) -> bytes:
        out = b""
        if not self._started:
            self._started = True
            kind = "chat.completion.chunk" if self._chat else "text_completion"
            prefix = "chatcmpl-" if self._chat else "cmpl-"
            self._head = {
                "id": prefix + chunk.request_id,
                "object": kind,
                "created": int(time.time()),
                "model": chunk.model_id,
            }
            if self._chat:
                first = {
                    "index": 0,
                    "delta": {"role": "assistant", "content": ""},
                    "finish_reason": None,
                }
                out += self._frame([first])
        if chunk.text:
            out += self._frame([self._choice({"content": chunk.text}, chunk.text, None)])
        if chunk.finish_reason:
            delta: dict[str, Any] = {}
            if chunk.tool_calls:
                delta["tool_calls"] = tool_calls_json(chunk.tool_calls)
            finish = FINISH.get(chunk.finish_reason, "stop")
            out += self._frame([self._choice(delta, "", finish)])
            if self._include_usage:
                out += self._frame([], usage_json(chunk.usage))
            out += b"data: [DONE]\n\n"
        return out

    def _choice(self, delta: dict[str, Any], text: str, finish: str | None) -> dict[str, Any]:
        if self._chat:
            return {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}


def embeddings_json(answer: gateway_pb2.EmbedResponse, encoding: str) -> dict[str, Any]:
    data = []
    for i, embedding in enumerate(answer.embeddings):
        values: Any = list(embedding.values)
        if encoding == "base64":
            values = base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
        data.append({"object": "embedding", "index": i, "embedding": values})
    tokens = answer.usage.input_tokens
    return {
        "object": "list",
        "data": data,
        "model": answer.model_id,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


# ---- errors -------------------------------------------------------------------------------

_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "invalid_request_error"),
    grpc.StatusCode.FAILED_PRECONDITION: (400, "invalid_request_error"),
    grpc.StatusCode.OUT_OF_RANGE: (400, "invalid_request_error"),
    grpc.StatusCode.UNAUTHENTICATED: (401, "authentication_error"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "permission_error"),
    grpc.StatusCode.NOT_FOUND: (404, "not_found_error"),
    grpc.StatusCode.ALREADY_EXISTS: (409, "invalid_request_error"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (408, "timeout_error"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "rate_limit_error"),
    grpc.StatusCode.ABORTED: (502, "api_error"),
    grpc.StatusCode.UNAVAILABLE: (503, "api_error"),
    grpc.StatusCode.UNIMPLEMENTED: (501, "api_error"),
    grpc.StatusCode.CANCELLED: (499, "api_error"),
}


def http_status(err: ModelyardError) -> tuple[int, str]:
    """The HTTP status and OpenAI error type of `err` (413 for a body or input too large)."""
    if isinstance(err, RequestTooLarge):
        return 413, "invalid_request_error"
    return _STATUS.get(err.code, (500, "api_error"))


def error_body(err: ModelyardError) -> dict[str, Any]:
    """OpenAI's error object: message, type, param (the field, when known), code (ours)."""
    _, kind = http_status(err)
    return {
        "error": {
            "message": err.message,
            "type": kind,
            "param": getattr(err, "field", None),
            "code": err.reason.lower(),
        }
    }
