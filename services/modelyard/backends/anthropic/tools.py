"""Tools on Anthropic's Messages API: definitions and tool turns out, streamed calls in.

Per Anthropic's tool use guide and Messages API reference
(https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/implement-tool-use,
https://docs.anthropic.com/en/api/messages, ``anthropic-version: 2023-06-01``,
read 2026-12-02):

- ``tools`` is ``[{"name", "description", "input_schema"}]``, the schema a
  JSON Schema object (a tool without arguments gets ``{"type": "object",
  "properties": {}}``);
- ``tool_choice`` is ``{"type": "auto"}``, ``{"type": "any"}`` (the
  contract's ``required``), ``{"type": "tool", "name"}`` or ``{"type":
  "none"}``;
- an assistant turn that called tools holds a ``tool_use`` block per call
  (``{"type": "tool_use", "id", "name", "input"}``, ``input`` the arguments as
  an object) after its text, and the answers are ``tool_result`` blocks
  (``{"type": "tool_result", "tool_use_id", "content"}``) in the next user
  turn: consecutive ``tool`` messages become that one turn. The API refuses a
  user turn after tool calls that does not *begin* with a result for each
  ("Messages following tool_use blocks must begin with a matching number of
  tool_result blocks"), or a result for a call the turn before did not make:
  `check_tool_turns` refuses both before the call;
- a stream sends each call as its own content block: ``content_block_start``
  with ``{"type": "tool_use", "id", "name", "input": {}}``, then
  ``content_block_delta`` events with ``{"type": "input_json_delta",
  "partial_json"}`` pieces of the arguments, keyed by the block's ``index``
  (the streaming guide, "Input JSON delta"); `ToolUseBlocks` gathers them, so
  the gateway passes each call on whole with ``stop_reason: "tool_use"``.
"""

from __future__ import annotations

import json
from typing import Any

from modelyard.backends.engine import call_arguments, text_content
from modelyard.backends.openai_compat.tools import ToolCallFragments
from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import common_pb2

API = "Anthropic's Messages API"
NO_ARGUMENTS = {"type": "object", "properties": {}}
_CHOICES = {"auto": {"type": "auto"}, "required": {"type": "any"}, "none": {"type": "none"}}


def tool_fields(params: common_pb2.GenerationParams) -> dict[str, Any]:
    """The request's ``tools`` and ``tool_choice``; none without tools (a choice of "none"
    or "auto" without tools asks nothing of the model)."""
    if not params.tools:
        return {}
    tools = []
    for tool in params.tools:
        definition: dict[str, Any] = {"name": tool.name}
        if tool.description:
            definition["description"] = tool.description
        definition["input_schema"] = (
            json.loads(tool.parameters_json) if tool.parameters_json else NO_ARGUMENTS
        )
        tools.append(definition)
    fields: dict[str, Any] = {"tools": tools}
    choice = params.tool_choice
    if choice:
        fields["tool_choice"] = _CHOICES.get(choice) or {"type": "tool", "name": choice}
    return fields


def tool_use_blocks(message: common_pb2.ChatMessage, where: str) -> list[dict[str, Any]]:
    """A ``tool_use`` block for each call of an assistant message; `InvalidRequest` for
    arguments that are not a JSON object (the API takes ``input`` as one)."""
    blocks = []
    for j, call in enumerate(message.tool_calls):
        field = f"{where}.tool_calls[{j}].arguments_json"
        arguments = call_arguments(call, field, API)
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": arguments})
    return blocks


def tool_result_block(message: common_pb2.ChatMessage, where: str) -> dict[str, Any]:
    """A ``tool`` message as the ``tool_result`` block answering its call (its text; an
    empty result sends no ``content``, which the API allows)."""
    if not message.tool_call_id:
        raise InvalidRequest(
            f"{where} is a tool result without tool_call_id: name the call it answers",
            field=f"{where}.tool_call_id",
        )
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.tool_call_id}
    text = text_content(message, where)
    if text:
        block["content"] = text
    return block


def check_tool_turns(turns: list[dict[str, Any]], sources: list[str]) -> None:
    """`InvalidRequest` where a turn after tool calls does not begin with a result for
    each, or a result answers no call of the turn before (`sources`: each turn's first
    message, ``input.chat.messages[i]``)."""
    calls: list[str] = []
    for turn, where in zip(turns, sources, strict=True):
        blocks = turn["content"]
        results = [b["tool_use_id"] for b in blocks if b.get("type") == "tool_result"]
        leading = [b.get("tool_use_id") or "" for b in blocks[: len(calls)]]
        if calls and (turn["role"] != "user" or sorted(leading) != sorted(calls)):
            raise InvalidRequest(
                f"{where}: {API} needs the turn after tool calls to begin with a tool "
                f"result for each ({', '.join(calls)}): put the tool messages right after "
                "the assistant message that called them",
                field=where,
            )
        unknown = [r for r in results if r not in calls]
        if unknown:
            raise InvalidRequest(
                f"{where}: tool result for '{unknown[0]}', which the assistant message "
                f"before did not call ({API} takes a result only right after its call)",
                field=where,
            )
        calls = [b["id"] for b in blocks if b.get("type") == "tool_use"]
    if calls:
        raise InvalidRequest(
            f"{sources[-1]}: the chat ends with tool calls ({', '.join(calls)}) and no "
            f"results; {API} needs a tool result for each",
            field=sources[-1],
        )


class ToolUseBlocks:
    """The calls of one streamed answer, gathered from their blocks by index."""

    def __init__(self) -> None:
        self._fragments = ToolCallFragments()
        self._indexes: set[int] = set()

    def __bool__(self) -> bool:
        return bool(self._indexes)

    def start(self, index: int, block: dict[str, Any]) -> None:
        """A ``content_block_start`` of type ``tool_use`` (checked by `block_problem`)."""
        self._indexes.add(index)
        self._fragments.add([{"index": index, "id": block["id"], "function": block}])

    def takes(self, index: int) -> bool:
        return index in self._indexes

    def add(self, index: int, partial_json: str) -> None:
        self._fragments.add([{"index": index, "function": {"arguments": partial_json}}])

    def whole(self) -> tuple[common_pb2.ToolCall, ...] | str:
        """Every call whole, in block order (no arguments: ``{}``); what is wrong when a
        call's gathered input is not a JSON object."""
        calls = self._fragments.whole()
        if isinstance(calls, str):
            return calls
        for call in calls:
            if not call.arguments_json:
                call.arguments_json = "{}"
            try:
                arguments = json.loads(call.arguments_json)
            except ValueError:
                arguments = None
            if not isinstance(arguments, dict):
                return f"tool_use '{call.id}' input is not a JSON object: {call.arguments_json!r}"
        return calls


def block_problem(kind: str, value: dict[str, Any], tools: ToolUseBlocks, index: Any) -> str | None:
    """What makes a tool_use block start or an input_json_delta not the reference's shape."""
    if kind == "content_block_start" and value.get("type") == "tool_use":
        if type(index) is not int:
            return f"content_block_start index is {index!r}, not an index"
        for key in ("id", "name"):
            if not isinstance(value.get(key), str) or not value[key]:
                return f"tool_use block {key} is {value.get(key)!r}, not a string"
    if kind == "content_block_delta" and value.get("type") == "input_json_delta":
        if type(index) is not int or not tools.takes(index):
            return f"input_json_delta for block {index!r}, which is no tool_use block"
        if not isinstance(value.get("partial_json"), str):
            return f"input_json_delta partial_json is {value.get('partial_json')!r}, not a string"
    return None
