"""Tools on Cohere's Chat v2 API: definitions and tool turns out, streamed calls in.

Per Cohere's tool use guides (https://docs.cohere.com/v2/docs/tool-use-overview,
https://docs.cohere.com/v2/docs/tool-use-streaming) and the Chat v2 reference
(https://docs.cohere.com/v2/reference/chat-stream), read 2026-12-02, with the
event shapes of cohere-python's generated types (``ChatToolCallStartEventDeltaMessage``,
``ChatToolCallDeltaEventDeltaMessageToolCalls``):

- ``tools`` is ``[{"type": "function", "function": {"name", "description",
  "parameters"}}]``, OpenAI's shape, so `openai_compat.tools.tool_fields`
  makes it;
- ``tool_choice`` is ``"REQUIRED"`` or ``"NONE"``; left out, the model
  chooses (the contract's ``auto``). Cohere cannot be told to call one named
  tool: that is `InvalidRequest` naming ``params.tool_choice`` and Cohere,
  unless ``params.drop_unsupported_params`` is set, when the choice is left
  out (the model then chooses) and listed as dropped;
- an assistant turn that called tools is ``{"role": "assistant",
  "tool_plan", "tool_calls": [{"id", "type": "function", "function":
  {"name", "arguments"}}]}``: its text is the ``tool_plan`` (what the model
  said it would do), and each answer is ``{"role": "tool", "tool_call_id",
  "content"}``;
- a stream plans first (``tool-plan-delta``, ``delta.message.tool_plan``:
  passed on as the answer's text, so a tool turn sends it back as the plan),
  then per call ``tool-call-start`` (``index``, ``delta.message.tool_calls``
  one object with ``id``, ``type`` and ``function.name``, ``arguments`` ""),
  ``tool-call-delta`` events (``delta.message.tool_calls.function.arguments``
  pieces) and ``tool-call-end``; ``message-end`` says ``TOOL_CALL``.
  `ToolCallEvents` gathers the pieces by index into whole calls.
"""

from __future__ import annotations

import json
from typing import Any

from modelyard.backends.engine import text_content
from modelyard.backends.openai_compat import tools as openai_tools
from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import common_pb2

CHOICES = {"required": "REQUIRED", "none": "NONE"}
TOOL_EVENTS = ("tool-plan-delta", "tool-call-start", "tool-call-delta", "tool-call-end")


def tool_fields(params: common_pb2.GenerationParams) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The request's ``tools`` and ``tool_choice``, and the parameters dropped (a named
    choice, when the request allows dropping what Cohere cannot honour)."""
    if not params.tools:
        return {}, ()
    fields: dict[str, Any] = {"tools": openai_tools.tool_fields(params)["tools"]}
    choice = params.tool_choice
    if choice in CHOICES:
        fields["tool_choice"] = CHOICES[choice]
    elif choice and choice != "auto":
        if not params.drop_unsupported_params:
            raise InvalidRequest(
                f"params.tool_choice: Cohere's Chat v2 API cannot be told to call one named "
                f"tool ('{choice}'); it takes auto, required or none",
                field="params.tool_choice",
            )
        return fields, ("tool_choice",)
    return fields, ()


def assistant_calls(message: common_pb2.ChatMessage, where: str) -> dict[str, Any]:
    """An assistant message that called tools: its calls, and its text as the plan."""
    out: dict[str, Any] = {
        "role": "assistant",
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_json or "{}"},
            }
            for call in message.tool_calls
        ],
    }
    plan = text_content(message, where)
    if plan:
        out["tool_plan"] = plan
    return out


def tool_result(message: common_pb2.ChatMessage, where: str) -> dict[str, Any]:
    """A ``tool`` message: the result of the call it names."""
    if not message.tool_call_id:
        raise InvalidRequest(
            f"{where} is a tool result without tool_call_id: name the call it answers",
            field=f"{where}.tool_call_id",
        )
    return {
        "role": "tool",
        "tool_call_id": message.tool_call_id,
        "content": text_content(message, where),
    }


def tool_event_problem(event: dict[str, Any]) -> str | None:
    """What makes a tool-plan or tool-call event not the reference's shape, or None."""
    kind = event["type"]
    delta = event.get("delta")
    message = delta.get("message") if isinstance(delta, dict) else None
    if kind == "tool-call-end":
        return None
    if not isinstance(message, dict):
        return f"{kind} without delta.message"
    if kind == "tool-plan-delta":
        plan = message.get("tool_plan")
        return None if isinstance(plan, str) else f"tool_plan is {plan!r}, not a string"
    if type(event.get("index")) is not int:
        return f"{kind} index is {event.get('index')!r}, not an index"
    call = message.get("tool_calls")
    if not isinstance(call, dict):
        return f"{kind} delta.message.tool_calls is not an object"
    function = call.get("function")
    if not isinstance(function, dict):
        return f"{kind} tool_calls.function is not an object"
    keys = ("id", "name") if kind == "tool-call-start" else ("arguments",)
    for key in keys:
        value = call.get(key) if key == "id" else function.get(key)
        if not isinstance(value, str) or (key != "arguments" and not value):
            return f"{kind} tool_calls {key} is {value!r}, not a string"
    return None


class ToolCallEvents:
    """The calls of one streamed answer, gathered from their events by index."""

    def __init__(self) -> None:
        self._fragments = openai_tools.ToolCallFragments()
        self._started: set[int] = set()

    def __bool__(self) -> bool:
        return bool(self._started)

    def take(self, event: dict[str, Any]) -> str:
        """One tool event (checked by `tool_event_problem`, and not `unstarted`); returns
        its plan text, if any."""
        kind = event["type"]
        if kind == "tool-plan-delta":
            return str(event["delta"]["message"]["tool_plan"])
        if kind == "tool-call-end":
            return ""
        index = event["index"]
        call = event["delta"]["message"]["tool_calls"]
        if kind == "tool-call-start":
            self._started.add(index)
            self._fragments.add([{"index": index, "id": call["id"], "function": call["function"]}])
        else:
            self._fragments.add([{"index": index, "function": call["function"]}])
        return ""

    def unstarted(self, event: dict[str, Any]) -> bool:
        """Whether `event` is a tool-call-delta for a call that never started."""
        return event["type"] == "tool-call-delta" and event["index"] not in self._started

    def whole(self) -> tuple[common_pb2.ToolCall, ...] | str:
        """Every call whole, in index order (no arguments: ``{}``); what is wrong when a
        call's arguments are not a JSON object."""
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
                shown = call.arguments_json
                return f"tool call '{call.id}' arguments are not a JSON object: {shown!r}"
        return calls
