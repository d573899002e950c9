"""Tools on Ollama's ``/api/chat``: definitions and tool turns out, whole calls in.

Per Ollama's API reference (docs/api.md of ollama/ollama, "Chat request (with
tools)", and the blog post "Streaming responses with tool calling",
https://ollama.com/blog/streaming-tool, 2025-05-28): ``tools`` are OpenAI's
function definitions (``{"type": "function", "function": {"name",
"description", "parameters"}}``, the OpenAI wire's `tool_fields` makes them);
an assistant turn that called tools carries ``tool_calls`` as ``{"function":
{"name", "arguments"}}`` with the arguments a JSON *object*, not a string; a
result is a ``{"role": "tool", "content", "tool_name"}`` message (no call id:
the name is the one of the call the result answers). A streamed answer sends
each call whole in a line's ``message.tool_calls``, without an id, and ends
with ``done_reason: "stop"``: `ToolCalls` gives each call an id made from what
it is (stable: the same call in the same place gets the same id) and the
answer finishes with FINISH_REASON_TOOL_CALLS.

Ollama has no ``tool_choice``: the model always decides, which is ``"auto"``
(and ``""``). ``"none"`` is honoured by offering the model no tools; any other
choice (``"required"``, a tool's name) is refused naming
``params.tool_choice``, or with ``drop_unsupported_params`` sent as ``auto``
and named in ``dropped_params``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import ollama

from modelyard.backends.engine import call_arguments
from modelyard.backends.openai_compat.tools import tool_fields
from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import common_pb2

# tool_choice values that need nothing Ollama lacks ("none": no tools offered).
HONOURED_CHOICES = frozenset({"", "auto", "none"})


def offered_tools(params: common_pb2.GenerationParams) -> list[dict[str, Any]] | None:
    """The request's ``tools``; None without any, or when ``tool_choice`` is "none"."""
    if params.tool_choice == "none":
        return None
    tools: list[dict[str, Any]] | None = tool_fields(params).get("tools")
    return tools


def add_tool_turns(messages: list[dict[str, Any]], model_input: common_pb2.Input) -> None:
    """Put the chat's tool calls and results on Ollama's `messages` (one per chat
    message, in order): the calls with their arguments as objects, each result with
    the ``tool_name`` of the call it answers (unless its own ``name`` gave one)."""
    if model_input.WhichOneof("kind") != "chat":
        return
    names: dict[str, str] = {}  # call id -> function name, from the turns so far
    for i, (message, out) in enumerate(zip(model_input.chat.messages, messages, strict=True)):
        if message.tool_calls:
            out["tool_calls"] = [
                {
                    "function": {
                        "name": call.name,
                        "arguments": call_arguments(
                            call,
                            f"input.chat.messages[{i}].tool_calls[{j}].arguments_json",
                            "Ollama",
                        ),
                    }
                }
                for j, call in enumerate(message.tool_calls)
            ]
            names.update((call.id, call.name) for call in message.tool_calls)
        if message.tool_call_id and "tool_name" not in out:
            name = names.get(message.tool_call_id)
            if name is None:
                raise InvalidRequest(
                    f"input.chat.messages[{i}].tool_call_id {message.tool_call_id!r} names no "
                    "call of an earlier assistant message: Ollama takes a result by its "
                    "tool's name, found from that call",
                    field=f"input.chat.messages[{i}].tool_call_id",
                )
            out["tool_name"] = name


class ToolCalls:
    """The calls of one streamed answer, in the order they came, each with an id."""

    def __init__(self) -> None:
        self._calls: list[common_pb2.ToolCall] = []

    def add(self, calls: Sequence[ollama.Message.ToolCall]) -> None:
        for call in calls:
            arguments = json.dumps(dict(call.function.arguments), separators=(",", ":"))
            self._calls.append(
                common_pb2.ToolCall(
                    id=_call_id(len(self._calls), call.function.name, arguments),
                    name=call.function.name,
                    arguments_json=arguments,
                )
            )

    def whole(self) -> tuple[common_pb2.ToolCall, ...]:
        return tuple(self._calls)


def _call_id(index: int, name: str, arguments: str) -> str:
    """``call_`` and 24 hex digits of the call's place, name and arguments: the same
    call gets the same id, and two calls of an answer never share one."""
    digest = hashlib.sha256(f"{index}\0{name}\0{arguments}".encode()).hexdigest()
    return f"call_{digest[:24]}"
