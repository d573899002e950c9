"""What a request's tools and tool messages must be before any backend sees them.

The contract (common.proto): `GenerationParams.tools` are functions the model
may call, each a name (letters, digits, ``_`` and ``-``, unique in the request),
a description and its arguments as a JSON Schema object; `tool_choice` is ""
or "auto", "none", "required" or one of the tools' names. In a chat, an
assistant message may carry the `tool_calls` its model asked for, and a
``tool`` message answers one of them by `tool_call_id`. The checks here refuse
anything else with `InvalidRequest` naming the field, as OpenAI's API would,
so a provider never sees a request it would reject (or, worse, accept and
misread). A model that lists its capabilities without CAPABILITY_TOOLS is
refused tools (`check_tools_for_model`); one that lists none is left to its
provider.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from modelyard.gateway.guardrails import schema_validator
from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import common_pb2, gateway_pb2

TOOL_CHOICES = ("", "auto", "none", "required")
_NAME = re.compile(r"[A-Za-z0-9_-]+")


def check_tools(request: gateway_pb2.GenerateRequest) -> None:
    """`InvalidRequest` for the first tool, tool choice or tool message that is not
    as the contract says (see the module doc)."""
    params = request.params
    names: set[str] = set()
    for i, tool in enumerate(params.tools):
        field = f"params.tools[{i}]"
        if not _NAME.fullmatch(tool.name):
            raise InvalidRequest(
                f"{field}.name {tool.name!r} must be letters, digits, '_' and '-' only",
                field=f"{field}.name",
            )
        if tool.name in names:
            raise InvalidRequest(
                f"{field}.name {tool.name!r} names a second tool of that name",
                field=f"{field}.name",
            )
        names.add(tool.name)
        if tool.parameters_json:
            validator = schema_validator(tool.parameters_json, f"{field}.parameters_json")
            schema = validator.schema  # an object: `schema_validator` refused anything else
            if isinstance(schema, dict) and schema.get("type", "object") != "object":
                raise InvalidRequest(
                    f'{field}.parameters_json must describe an object ("type": "object"): '
                    "a call's arguments are a JSON object",
                    field=f"{field}.parameters_json",
                )
    choice = params.tool_choice
    if choice not in TOOL_CHOICES and choice not in names:
        known = ", ".join(repr(n) for n in sorted(names)) or "none are defined"
        raise InvalidRequest(
            f"params.tool_choice {choice!r} must be auto, none, required or a tool's name "
            f"(tools: {known})",
            field="params.tool_choice",
        )
    if choice == "required" and not names:
        raise InvalidRequest(
            "params.tool_choice is 'required' but params.tools is empty",
            field="params.tool_choice",
        )
    if request.input.WhichOneof("kind") == "chat":
        _check_tool_messages(request.input.chat.messages)


def _check_tool_messages(messages: Sequence[common_pb2.ChatMessage]) -> None:
    for i, message in enumerate(messages):
        field = f"input.chat.messages[{i}]"
        if message.tool_calls and message.role != "assistant":
            raise InvalidRequest(
                f"{field}.tool_calls is set on a {message.role!r} message: only an "
                "assistant message carries the calls its model asked for",
                field=f"{field}.tool_calls",
            )
        for j, call in enumerate(message.tool_calls):
            if not call.id or not call.name:
                raise InvalidRequest(
                    f"{field}.tool_calls[{j}] needs its id and name (as the model's answer "
                    "gave them)",
                    field=f"{field}.tool_calls[{j}]",
                )
        if message.role == "tool" and not message.tool_call_id:
            raise InvalidRequest(
                f"{field} is a tool result without tool_call_id: name the call it answers",
                field=f"{field}.tool_call_id",
            )
        if message.tool_call_id and message.role != "tool":
            raise InvalidRequest(
                f"{field}.tool_call_id is set on a {message.role!r} message: only a "
                "'tool' message answers a call",
                field=f"{field}.tool_call_id",
            )


def check_tools_for_model(
    request: gateway_pb2.GenerateRequest, model: common_pb2.ModelEntry
) -> None:
    """`InvalidRequest` when the request has tools and `model` says it cannot call any."""
    if (
        request.params.tools
        and model.capabilities
        and common_pb2.CAPABILITY_TOOLS not in model.capabilities
    ):
        raise InvalidRequest(
            f"params.tools: model '{model.id}' (provider '{model.provider}') does not call "
            "tools (no CAPABILITY_TOOLS in its catalog entry)",
            field="params.tools",
        )
