"""Tools on Bedrock's Converse API: the tool configuration and tool turns out, calls in.

Per the Bedrock Runtime API reference (API version 2023-09-30, read 2026-12-01:
``ToolConfiguration``, ``ToolSpecification``, ``ToolChoice``, ``ToolUseBlock``,
``ToolResultBlock``, ``ContentBlockStart``/``ToolUseBlockStart``,
``ContentBlockDelta``/``ToolUseBlockDelta``) and the user guide's "Call a tool with
the Converse API" (https://docs.aws.amazon.com/bedrock/latest/userguide/tool-use-inference-call.html):

- ``toolConfig``: ``tools`` ``[{toolSpec: {name, description, inputSchema: {json}}}]``
  (the JSON Schema as it is; a tool without one gets the empty object schema) and
  ``toolChoice``: "auto" ``{auto: {}}``, "required" ``{any: {}}``, a tool's name
  ``{tool: {name}}`` (Bedrock takes ``any`` and ``tool`` only for some models,
  Anthropic Claude and Amazon Nova among them, and refuses them for the others).
  Converse has no choice "none": the tools are left out, so the model cannot
  call any; and as Converse refuses ``toolUse``/``toolResult`` blocks in a
  request without ``toolConfig``, a chat that carries tool turns is refused
  "none" naming ``params.tool_choice`` (with ``drop_unsupported_params`` the
  choice is left out, the tools sent, and ``tool_choice`` listed as dropped:
  `dropped_tool_choice`), and refused without tools naming ``params.tools``;
- an assistant message's calls are ``toolUse`` blocks ``{toolUseId, name,
  input}`` after its text (``input`` the call's arguments, a JSON object);
- a "tool" message is a ``toolResult`` block ``{toolUseId, content: [{text}]}``
  in a user message (consecutive results, and a user message after them, share
  one message, as Converse wants turns to alternate);
- a streamed call starts with ``contentBlockStart.start.toolUse`` ``{toolUseId,
  name}`` at its ``contentBlockIndex`` and its input comes as strings in
  ``contentBlockDelta.delta.toolUse.input``, gathered here by index
  (`ToolUseBlocks`); a unary answer holds ``toolUse`` blocks whole.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from modelyard.backends.engine import call_arguments
from modelyard.backends.speech.unsupported_params import dropped_params
from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import common_pb2

_NO_ARGUMENTS = {"type": "object", "properties": {}}
_WHERE = "Bedrock's Converse API (provider bedrock)"


def dropped_tool_choice(
    model: str, model_input: common_pb2.Input, params: common_pb2.GenerationParams
) -> tuple[str, ...]:
    """``("tool_choice",)`` when it is "none" in a chat with tool turns, which Converse
    cannot honour, and the request lets it be dropped; refused when it does not."""
    if params.tool_choice != "none" or not _tool_turns(model_input):
        return ()
    return dropped_params(
        params,
        {"tool_choice"},
        model,
        f"{_WHERE}: it has no tool choice 'none' (the tools are left out instead) and "
        "refuses a chat with tool calls or results without its tools",
    )


def _tool_turns(model_input: common_pb2.Input) -> bool:
    return model_input.WhichOneof("kind") == "chat" and any(
        m.tool_calls or m.tool_call_id or m.role == "tool" for m in model_input.chat.messages
    )


def tool_config(
    model_input: common_pb2.Input, params: common_pb2.GenerationParams, dropped: tuple[str, ...]
) -> Any:
    """The request's ``toolConfig``, or None when it has none; `dropped`: what
    `dropped_tool_choice` left out."""
    turns = _tool_turns(model_input)
    if turns and not params.tools:
        raise InvalidRequest(
            f"params.tools is empty: {_WHERE} takes a chat with tool calls or results only "
            "with the tools' definitions",
            field="params.tools",
        )
    choice = "" if "tool_choice" in dropped else params.tool_choice
    if not params.tools or choice == "none":
        return None
    tools = []
    for tool in params.tools:
        spec: dict[str, Any] = {"name": tool.name}
        if tool.description:
            spec["description"] = tool.description
        schema = json.loads(tool.parameters_json) if tool.parameters_json else _NO_ARGUMENTS
        spec["inputSchema"] = {"json": schema}
        tools.append({"toolSpec": spec})
    config: dict[str, Any] = {"tools": tools}
    if choice == "auto":
        config["toolChoice"] = {"auto": {}}
    elif choice == "required":
        config["toolChoice"] = {"any": {}}
    elif choice:
        config["toolChoice"] = {"tool": {"name": choice}}
    return config


def tool_use_blocks(message: common_pb2.ChatMessage, where: str) -> list[dict[str, Any]]:
    """An assistant message's calls as ``toolUse`` blocks."""
    blocks = []
    for j, call in enumerate(message.tool_calls):
        field = f"{where}.tool_calls[{j}].arguments_json"
        blocks.append(
            {
                "toolUse": {
                    "toolUseId": call.id,
                    "name": call.name,
                    "input": call_arguments(call, field, "Bedrock"),
                }
            }
        )
    return blocks


def tool_result_block(
    messages: Sequence[common_pb2.ChatMessage], i: int, text: str
) -> dict[str, Any]:
    """The "tool" message ``messages[i]`` (its text `text`) as a ``toolResult`` block;
    its ``tool_call_id`` must be a call of an earlier assistant message, as Converse
    refuses a result of no ``toolUse``."""
    call_id = messages[i].tool_call_id
    if not any(call.id == call_id for m in messages[:i] for call in m.tool_calls):
        field = f"input.chat.messages[{i}].tool_call_id"
        raise InvalidRequest(
            f"{field} {call_id!r} answers no call of an earlier assistant message ({_WHERE} "
            "takes a toolResult only for a toolUse before it)",
            field=field,
        )
    return {"toolResult": {"toolUseId": call_id, "content": [{"text": text}]}}


def tool_use_start_problem(start: Any) -> str | None:
    """What makes ``contentBlockStart.start`` no ``ContentBlockStart`` of a call, or None
    (a start of anything else is None too: only tool use is read)."""
    if not isinstance(start, dict) or "toolUse" not in start:
        return None
    tool_use = start["toolUse"]
    if not isinstance(tool_use, dict):
        return "start.toolUse is not an object"
    for key in ("toolUseId", "name"):
        if not isinstance(tool_use.get(key), str) or not tool_use[key]:
            return f"start.toolUse.{key} is {tool_use.get(key)!r}, not a string"
    return None


class ToolUseBlocks:
    """The calls of one streamed answer: started by index, their input in fragments."""

    def __init__(self) -> None:
        self._calls: dict[int, tuple[str, str, list[str]]] = {}

    def start(self, index: int, tool_use: dict[str, Any]) -> None:
        self._calls[index] = (tool_use["toolUseId"], tool_use["name"], [])

    def add(self, index: int, fragment: str) -> str | None:
        """One ``delta.toolUse.input`` fragment; what is wrong when no call started there."""
        call = self._calls.get(index)
        if call is None:
            return f"delta.toolUse for contentBlockIndex {index}, where no toolUse started"
        call[2].append(fragment)
        return None

    def whole(self) -> tuple[common_pb2.ToolCall, ...] | str:
        """Every call whole, in index order (no input: no arguments, ``{}``); what is
        wrong when a call's gathered input is no JSON object."""
        calls = []
        for index in sorted(self._calls):
            call_id, name, parts = self._calls[index]
            arguments = "".join(parts) or "{}"
            try:
                parsed = json.loads(arguments)
            except ValueError:
                parsed = None
            if not isinstance(parsed, dict):
                return f"the toolUse input of contentBlockIndex {index} is no JSON object"
            calls.append(common_pb2.ToolCall(id=call_id, name=name, arguments_json=arguments))
        return tuple(calls)


def answer_tool_calls(content: list[dict[str, Any]]) -> tuple[common_pb2.ToolCall, ...]:
    """The ``toolUse`` blocks of a unary answer's content (checked by `tool_use_problem`)."""
    return tuple(
        common_pb2.ToolCall(
            id=block["toolUse"]["toolUseId"],
            name=block["toolUse"]["name"],
            arguments_json=json.dumps(block["toolUse"].get("input") or {}, separators=(",", ":")),
        )
        for block in content
        if "toolUse" in block
    )


def tool_use_problem(tool_use: Any) -> str | None:
    """What makes a unary answer's ``toolUse`` no ``ToolUseBlock``, or None."""
    problem = tool_use_start_problem({"toolUse": tool_use})
    if problem is not None:
        return problem.removeprefix("start.")
    if not isinstance(tool_use.get("input", {}), dict):
        return "toolUse.input is not an object"
    return None
