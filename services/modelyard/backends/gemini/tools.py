"""Tools on the Gemini wire: function declarations and tool turns out, whole calls in.

Per Google's function-calling guide and API reference (read 2026-12-01:
https://ai.google.dev/gemini-api/docs/function-calling, https://ai.google.dev/api/caching#Tool,
and Vertex AI's ``FunctionDeclaration`` / ``ToolConfig``,
https://cloud.google.com/vertex-ai/generative-ai/docs/reference/rest/v1/Tool):

- a request's tools are one ``Tool`` of ``functionDeclarations`` ``{name,
  description, parametersJsonSchema}``. ``parametersJsonSchema`` (both APIs; it
  excludes ``parameters``) takes the tool's JSON Schema as it is, so nothing is
  converted and no keyword is lost; ``parameters`` would take only the OpenAPI
  subset (``Schema``: no ``$ref``, ``oneOf``, ``additionalProperties``...), which
  a translation could only approximate. A tool without a schema is sent without
  one (a function of no arguments);
- ``tool_choice`` is ``toolConfig.functionCallingConfig``: "auto" mode ``AUTO``,
  "none" ``NONE``, "required" ``ANY``, a tool's name ``ANY`` with
  ``allowedFunctionNames: [name]``;
- an assistant message's calls are ``functionCall`` parts ``{name, args}`` after
  its text (``args`` the call's arguments, a JSON object: anything else is
  refused naming the call's ``arguments_json``), in the ``model`` turn;
- a "tool" message is a ``functionResponse`` part ``{name, response}`` in a
  ``user`` turn (the guide's role for function results; consecutive results
  share one turn, as the guide sends parallel calls' results). Gemini matches a
  result to its call by the function's name, which a "tool" message does not
  carry: it is the name of the earlier assistant call with the same
  ``tool_call_id`` (none: refused naming ``tool_call_id``). ``response`` must be
  a JSON object: a result that is one is sent as it is, any other text as
  ``{"output": text}``, the key the reference names for a function's output.

An answer's ``functionCall`` parts come whole, one per part (never in
fragments). Gemini gives a call an ``id`` only sometimes; without one the call
gets ``gemini-call-`` and 24 hex digits of the SHA-256 of the response's
``responseId``, the call's position in the answer, its name and its arguments:
the same answer always gets the same ids, and two calls of one answer never
share one. Ids are not sent back (Gemini pairs results by name), and neither
is a part's ``thoughtSignature``, which a `ToolCall` has no room for: Gemini
2.5 models take a later turn without it (Gemini 3 models would refuse one).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from modelyard.backends.engine import call_arguments, text_content
from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import common_pb2

_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}


def tool_fields(params: common_pb2.GenerationParams) -> dict[str, Any]:
    """The request's ``tools`` and ``toolConfig``; none without tools (the gateway
    checked the tools' names and schemas, and that a named choice is one of them)."""
    if not params.tools:
        return {}
    declarations = []
    for tool in params.tools:
        declaration: dict[str, Any] = {"name": tool.name}
        if tool.description:
            declaration["description"] = tool.description
        if tool.parameters_json:
            declaration["parametersJsonSchema"] = json.loads(tool.parameters_json)
        declarations.append(declaration)
    fields: dict[str, Any] = {"tools": [{"functionDeclarations": declarations}]}
    choice = params.tool_choice
    if choice in _MODES:
        fields["toolConfig"] = {"functionCallingConfig": {"mode": _MODES[choice]}}
    elif choice:
        fields["toolConfig"] = {
            "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [choice]}
        }
    return fields


def function_call_parts(message: common_pb2.ChatMessage, field: str) -> list[dict[str, Any]]:
    """An assistant message's calls as ``functionCall`` parts."""
    parts = []
    for j, call in enumerate(message.tool_calls):
        args = call_arguments(call, f"{field}.tool_calls[{j}].arguments_json", "Gemini")
        parts.append({"functionCall": {"name": call.name, "args": args}})
    return parts


def function_response_part(
    messages: Sequence[common_pb2.ChatMessage], i: int, where: str
) -> dict[str, Any]:
    """The "tool" message ``messages[i]`` as a ``functionResponse`` part."""
    message = messages[i]
    field = f"input.chat.messages[{i}]"
    name = _called_name(messages[:i], message.tool_call_id)
    if name is None:
        raise InvalidRequest(
            f"{field}.tool_call_id {message.tool_call_id!r} answers no call of an earlier "
            f"assistant message: {where} needs the called function's name, found from that call",
            field=f"{field}.tool_call_id",
        )
    text = text_content(message, field)
    try:
        result = json.loads(text)
    except ValueError:
        result = None
    response = result if isinstance(result, dict) else {"output": text}
    return {"functionResponse": {"name": name, "response": response}}


def _called_name(earlier: Sequence[common_pb2.ChatMessage], call_id: str) -> str | None:
    for message in reversed(earlier):
        for call in message.tool_calls:
            if call.id == call_id:
                return call.name
    return None


def answer_call(
    function_call: dict[str, Any], response_id: str, position: int
) -> common_pb2.ToolCall:
    """A ``functionCall`` part of an answer (checked by `function_call_problem`) as a
    whole `ToolCall`, with Gemini's id or a made one (see the module doc)."""
    name = function_call["name"]
    arguments = json.dumps(function_call.get("args") or {}, separators=(",", ":"))
    call_id = function_call.get("id")
    if not call_id:
        digest = hashlib.sha256(f"{response_id}\n{position}\n{name}\n{arguments}".encode())
        call_id = f"gemini-call-{digest.hexdigest()[:24]}"
    return common_pb2.ToolCall(id=call_id, name=name, arguments_json=arguments)


def function_call_problem(function_call: Any) -> str | None:
    """What makes a part's ``functionCall`` not the reference's ``FunctionCall``, or None."""
    if not isinstance(function_call, dict):
        return "functionCall is not an object"
    name = function_call.get("name")
    if not isinstance(name, str) or not name:
        return f"functionCall.name is {name!r}, not a function's name"
    args = function_call.get("args")
    if args is not None and not isinstance(args, dict):
        return f"functionCall.args is {args!r}, not an object"
    call_id = function_call.get("id")
    if call_id is not None and not isinstance(call_id, str):
        return f"functionCall.id is {call_id!r}, not a string"
    return None
