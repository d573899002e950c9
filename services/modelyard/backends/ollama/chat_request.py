"""An `Input` and its `GenerationParams` as the body of Ollama's ``POST /api/chat``, or of
``POST /api/generate`` for text input (`generate_request`).

Ollama's API reference (docs/api.md of ollama/ollama, "Generate a chat
completion"): ``messages`` with ``role`` and ``content`` (``tool_name`` on a
``tool`` message), ``options`` taking the Modelfile parameters (``num_predict``,
``temperature``, ``top_p``, ``top_k``, ``stop``, ``seed``), ``format`` a JSON
schema for structured output, ``keep_alive`` how long the model stays loaded
after the call; a message's image parts go in its ``images`` (base64, the
reference's "a list of images to include in the message (for multimodal models
such as llava)"), its text parts joined in ``content``.

What Ollama cannot take is refused here, before any call, naming the field:
an image URL (the daemon reads image data only), a chat with no messages
(Ollama would only load the model and answer
``done_reason: "load"``, no text), a ``name`` on a message that is not a tool
result (Ollama's message has no such field), a response schema that is not a
JSON object, a ``tool_choice`` Ollama has no way to honour, a ``voice`` or
``audio_format`` (this is chat; with ``drop_unsupported_params`` those are left
out and named in ``dropped_params``). Tools and tool turns: `tools`. A trailing
assistant message is continued as it stands: Ollama
renders it open, so the model goes on from it (ollama/ollama#6778, answered by
its maintainers), which is what ``continue_final_message`` asks.

Text input is a completion, ``POST /api/generate`` (the reference's "Generate a
completion"): ``prompt`` the text, rendered in the model's template as the
daemon does, and the same ``options``, ``format`` and ``keep_alive``. That
endpoint has no tools, so text input offered tools goes to ``/api/chat`` as
one user message (`uses_generate`). An empty prompt is refused: Ollama would
only load the model (``done_reason: "load"``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from modelyard.backends.content_parts import ChatImage, message_items
from modelyard.backends.engine import chat_messages
from modelyard.backends.ollama.tools import HONOURED_CHOICES, add_tool_turns, offered_tools
from modelyard.backends.speech.unsupported_params import SPEECH_PARAMS, dropped_params
from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import common_pb2


@dataclass(frozen=True)
class ChatRequest:
    """The arguments of one `ollama.AsyncClient.chat` call (the model name aside)."""

    messages: list[dict[str, Any]]
    options: dict[str, Any] = field(default_factory=dict)
    format: dict[str, Any] | None = None  # a JSON schema
    keep_alive: float | None = None  # seconds
    tools: list[dict[str, Any]] | None = None  # OpenAI function definitions (`tools`)
    dropped: tuple[str, ...] = ()  # parameters left out: the last piece's dropped_params


def chat_request(
    model_input: common_pb2.Input,
    params: common_pb2.GenerationParams,
    *,
    keep_alive: float,
    backend: str,
    model: str,
) -> ChatRequest:
    """The chat request for one generation of `model` (its catalog id); `InvalidRequest`
    for what Ollama cannot take."""
    where = f"the Ollama backend '{backend}'"
    dropped = dropped_params(params, _unsupported(params), model, f"{where}, {_LACKS}")
    messages = [_message(m, i, where) for i, m in enumerate(chat_messages(model_input, _text))]
    add_tool_turns(messages, model_input)
    if model_input.WhichOneof("kind") == "chat":
        for i, (out, m) in enumerate(zip(messages, model_input.chat.messages, strict=True)):
            images = _images(m, f"input.chat.messages[{i}]", where)
            if images:
                out["images"] = images
    if not messages:
        raise InvalidRequest(
            f"input.chat has no messages: {where} needs at least one to answer",
            field="input.chat.messages",
        )
    if params.continue_final_message and messages[-1]["role"] != "assistant":
        raise InvalidRequest(
            "params.continue_final_message is set but the input does not end with an "
            "assistant message to continue",
            field="params.continue_final_message",
        )
    return ChatRequest(
        messages,
        _options(params),
        _schema(params.response_schema_json, where),
        keep_alive,
        offered_tools(params),
        dropped,
    )


# What /api/chat has no field for (the reference's request and its `options`).
_LACKS = "whose /api/chat has no tool_choice (the model decides: 'auto'), voice or audio format"


def _unsupported(params: common_pb2.GenerationParams) -> frozenset[str]:
    """The parameters Ollama cannot honour (`tools.HONOURED_CHOICES` for tool_choice)."""
    if params.tool_choice in HONOURED_CHOICES:
        return SPEECH_PARAMS
    return SPEECH_PARAMS | {"tool_choice"}


@dataclass(frozen=True)
class GenerateRequest:
    """The arguments of one `ollama.AsyncClient.generate` call (the model name aside)."""

    prompt: str
    options: dict[str, Any] = field(default_factory=dict)
    format: dict[str, Any] | None = None  # a JSON schema
    keep_alive: float | None = None  # seconds
    dropped: tuple[str, ...] = ()  # parameters left out: the last piece's dropped_params


def uses_generate(model_input: common_pb2.Input, params: common_pb2.GenerationParams) -> bool:
    """Whether the call is a completion on ``/api/generate``: text input, no tools."""
    return model_input.WhichOneof("kind") == "text" and not params.tools


def generate_request(
    model_input: common_pb2.Input,
    params: common_pb2.GenerationParams,
    *,
    keep_alive: float,
    backend: str,
    model: str,
) -> GenerateRequest:
    """The completion request of text input for `model` (its catalog id); `InvalidRequest`
    for what Ollama cannot take, as for chat."""
    where = f"the Ollama backend '{backend}'"
    dropped = dropped_params(params, _unsupported(params), model, f"{where}, {_LACKS}")
    if not model_input.text:
        raise InvalidRequest(
            f"input.text is empty: {where} would only load the model", field="input.text"
        )
    if params.continue_final_message:
        raise InvalidRequest(
            "params.continue_final_message is set but the input is text, not a chat ending "
            "with an assistant message to continue",
            field="params.continue_final_message",
        )
    return GenerateRequest(
        model_input.text,
        _options(params),
        _schema(params.response_schema_json, where),
        keep_alive,
        dropped,
    )


def _text(message: common_pb2.ChatMessage, where: str) -> str:
    """The message's ``content``: its text, or its text parts joined (the images go in
    ``images``, beside it)."""
    return "".join(item for item in message_items(message, where) if isinstance(item, str))


def _images(message: common_pb2.ChatMessage, field: str, where: str) -> list[bytes]:
    """The message's images, as bytes (the client sends them base64, as ``images`` is);
    an https URL refused: the daemon reads image data, not URLs."""
    images = []
    for item in message_items(message, field) if message.parts else ():
        if isinstance(item, ChatImage):
            item.refuse_url(where)
            images.append(item.data)
    return images


def _message(message: dict[str, Any], index: int, where: str) -> dict[str, Any]:
    name = message.pop("name", "")
    if not name:
        return message
    if message["role"] != "tool":
        raise InvalidRequest(
            f"input.chat.messages[{index}].name is set on a {message['role']!r} message: "
            f"{where} takes a name only on a 'tool' message (as tool_name)",
            field=f"input.chat.messages[{index}].name",
        )
    return {**message, "tool_name": name}


def _options(params: common_pb2.GenerationParams) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if params.max_tokens:
        options["num_predict"] = params.max_tokens
    for name in ("temperature", "top_p", "top_k", "seed"):
        if params.HasField(name):
            options[name] = getattr(params, name)
    if params.stop:
        options["stop"] = list(params.stop)
    return options


def _schema(text: str, where: str) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(
            f"params.response_schema_json is not JSON ({exc.msg} at character {exc.pos})",
            field="params.response_schema_json",
        ) from exc
    if not isinstance(schema, dict):
        raise InvalidRequest(
            f"params.response_schema_json is a JSON {type(schema).__name__}: {where} takes "
            "a JSON schema object as its format",
            field="params.response_schema_json",
        )
    return schema
