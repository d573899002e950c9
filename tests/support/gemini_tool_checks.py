"""What the fake Gemini checks of a request's tools, tool config and tool turns.

Per Google's function-calling guide (https://ai.google.dev/gemini-api/docs/function-calling)
and the API reference's ``Tool``/``FunctionDeclaration``/``ToolConfig``
(https://ai.google.dev/api/caching#Tool; Vertex AI's the same), as read 2026-12-01, with
INVALID_ARGUMENT messages in Google's field-path form.
"""

from __future__ import annotations

import re
from typing import Any

_FUNCTION_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_MODES = ("MODE_UNSPECIFIED", "AUTO", "ANY", "NONE", "VALIDATED")


def tools_problem(body: Any) -> str | None:
    """The INVALID_ARGUMENT message for tools, a tool config or tool turns the API
    refuses (see the module docstring), in Google's field-path form; None when fine."""
    if not isinstance(body, dict):
        return None
    declared: set[str] = set()
    for i, tool in enumerate(body.get("tools", [])):
        for j, declaration in enumerate(tool.get("functionDeclarations", [])):
            where = f"GenerateContentRequest.tools[{i}].function_declarations[{j}]"
            name = declaration.get("name")
            if not isinstance(name, str) or not _FUNCTION_NAME.fullmatch(name):
                return f"* {where}.name: Invalid function name. Must start with a letter or an underscore. Must be alphameric (a-z, A-Z, 0-9), underscores (_), dots (.), colons (:), or dashes (-), with a maximum length of 64."  # noqa: E501
            if "parameters" in declaration and "parametersJsonSchema" in declaration:
                return f"* {where}: parameters and parameters_json_schema are mutually exclusive"
            schema = declaration.get("parametersJsonSchema", {})
            if not isinstance(schema, dict):
                return f"* {where}.parameters_json_schema: must be an object"
            declared.add(name)
    config = body.get("toolConfig", {}).get("functionCallingConfig")
    if config is not None:
        mode = config.get("mode", "MODE_UNSPECIFIED")
        if mode not in _MODES:
            return (
                "Invalid value at 'tool_config.function_calling_config.mode' "
                f'(type.googleapis.com/google.ai.generativelanguage.v1beta.FunctionCallingConfig.Mode), "{mode}"'  # noqa: E501
            )
        names = config.get("allowedFunctionNames", [])
        if names and mode not in ("ANY", "VALIDATED"):
            return "* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: allowed_function_names may only be set when mode is ANY or VALIDATED."  # noqa: E501
        unknown = [n for n in names if n not in declared]
        if unknown:
            return f"* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: function {unknown[0]} is not declared."  # noqa: E501
    called: set[str] = set()
    for i, content in enumerate(body.get("contents", [])):
        for j, part in enumerate(content.get("parts", [])):
            where = f"GenerateContentRequest.contents[{i}].parts[{j}]"
            if "functionCall" in part:
                call = part["functionCall"]
                if content.get("role") != "model":
                    return f"* {where}.function_call: only a model turn calls functions"
                if not isinstance(call.get("args", {}), dict):
                    return f"* {where}.function_call.args: must be an object"
                called.add(call.get("name"))
            if "functionResponse" in part:
                result = part["functionResponse"]
                if content.get("role") not in ("user", "function"):
                    return f"* {where}.function_response: a function's result is a user turn's"
                if result.get("name") not in called:
                    return (
                        f"* {where}.function_response.name: no earlier function call of that name"
                    )
                if not isinstance(result.get("response"), dict):
                    return f"* {where}.function_response.response: must be an object"
    return None
