"""Tools on the OpenAI wire: definitions and tool turns out, streamed call fragments in.

Per OpenAI's Chat Completions reference (https://platform.openai.com/docs/api-reference/chat,
"tools", "tool_choice", and the streaming chunk's ``delta.tool_calls``): a request
names its functions as ``{"type": "function", "function": {"name", "description",
"parameters"}}``; ``tool_choice`` is ``"auto"``, ``"none"``, ``"required"`` or
``{"type": "function", "function": {"name"}}``. An assistant turn that called
tools carries ``tool_calls`` (``{"id", "type": "function", "function": {"name",
"arguments"}}``, ``content`` null when it said nothing), and each result is a
``{"role": "tool", "tool_call_id", "content"}`` message. A stream sends each
call in fragments keyed by ``index``: the first with its ``id`` and name, then
pieces of ``arguments``; `ToolCallFragments` gathers them, so the gateway passes
each call on whole, with the finish (``finish_reason: "tool_calls"``).
"""

from __future__ import annotations

import json
from typing import Any

from modelyard_client.v1 import common_pb2


def tool_fields(params: common_pb2.GenerationParams) -> dict[str, Any]:
    """The request's ``tools`` and ``tool_choice`` fields; none without tools."""
    if not params.tools:
        return {}
    tools = []
    for tool in params.tools:
        function: dict[str, Any] = {"name": tool.name}
        if tool.description:
            function["description"] = tool.description
        # No schema: a function without arguments.
        function["parameters"] = (
            json.loads(tool.parameters_json)
            if tool.parameters_json
            else {"type": "object", "properties": {}}
        )
        tools.append({"type": "function", "function": function})
    fields: dict[str, Any] = {"tools": tools}
    choice = params.tool_choice
    if choice in ("auto", "none", "required"):
        fields["tool_choice"] = choice
    elif choice:
        fields["tool_choice"] = {"type": "function", "function": {"name": choice}}
    return fields


def add_tool_turns(messages: list[dict[str, Any]], model_input: common_pb2.Input) -> None:
    """Put the chat's tool calls and tool results on its OpenAI-style `messages` (one
    per chat message, in order, as `engine.chat_messages` made them)."""
    if model_input.WhichOneof("kind") != "chat":
        return
    for message, out in zip(model_input.chat.messages, messages, strict=True):
        if message.tool_calls:
            out["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments_json or "{}"},
                }
                for call in message.tool_calls
            ]
            if not message.content and not message.parts:
                out["content"] = None
        if message.tool_call_id:
            out["tool_call_id"] = message.tool_call_id


def tool_call_deltas_problem(calls: Any) -> str | None:
    """What makes a chunk's ``delta.tool_calls`` not the reference's shape, or None."""
    if not isinstance(calls, list):
        return "tool_calls is not a list"
    for i, call in enumerate(calls):
        if not isinstance(call, dict):
            return f"tool_calls[{i}] is not an object"
        index = call.get("index", i)
        if type(index) is not int or index < 0:
            return f"tool_calls[{i}].index is {index!r}, not an index"
        function = call.get("function") or {}
        if not isinstance(function, dict):
            return f"tool_calls[{i}].function is not an object"
        for key, value in (
            ("id", call.get("id")),
            *((k, function.get(k)) for k in ("name", "arguments")),
        ):
            if value is not None and not isinstance(value, str):
                return f"tool_calls[{i}].{key} is {value!r}, not a string"
    return None


class ToolCallFragments:
    """The calls of one streamed answer, gathered from their fragments by index."""

    def __init__(self) -> None:
        self._calls: dict[int, tuple[list[str], list[str], list[str]]] = {}

    def add(self, deltas: list[dict[str, Any]]) -> None:
        """One chunk's ``delta.tool_calls`` (checked by `tool_call_deltas_problem`)."""
        for position, delta in enumerate(deltas):
            ids, names, arguments = self._calls.setdefault(
                delta.get("index", position), ([], [], [])
            )
            function = delta.get("function") or {}
            if delta.get("id"):
                ids.append(delta["id"])
            if function.get("name"):
                names.append(function["name"])
            if function.get("arguments"):
                arguments.append(function["arguments"])

    def whole(self) -> tuple[common_pb2.ToolCall, ...] | str:
        """Every call whole, in index order; what is wrong when one came without a name."""
        calls = []
        for index in sorted(self._calls):
            ids, names, arguments = self._calls[index]
            if not names:
                return f"tool call {index} has no function name"
            calls.append(
                common_pb2.ToolCall(
                    id="".join(ids), name="".join(names), arguments_json="".join(arguments)
                )
            )
        return tuple(calls)
