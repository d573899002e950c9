"""What the fake Bedrock checks of a Converse request's tools and tool blocks.

Per the Bedrock Runtime API reference (API version 2023-09-30, read 2026-12-01:
``ToolConfiguration``, ``ToolSpecification``, ``ToolChoice``, ``ToolUseBlock``,
``ToolResultBlock``) and the user guide's "Call a tool with the Converse API"
(https://docs.aws.amazon.com/bedrock/latest/userguide/tool-use-inference-call.html), with
the ValidationException texts Bedrock answers: no ``toolUse``/``toolResult`` block
without ``toolConfig``, each result answering a ``toolUse`` of the assistant message
just before, and all of them answered.
"""

from __future__ import annotations

import re
from typing import Any


def tools_problem(body: dict[str, Any]) -> str | None:
    """The ValidationException of a tool configuration or tool blocks Converse refuses."""
    config = body.get("toolConfig")
    if config is not None:
        tools = config.get("tools") if isinstance(config, dict) else None
        if not isinstance(tools, list) or not tools:
            return constraint("toolConfig.tools")
        names = set()
        for k, tool in enumerate(tools):
            spec = tool.get("toolSpec") if isinstance(tool, dict) else None
            if not isinstance(spec, dict) or not re.fullmatch(
                r"[a-zA-Z0-9_-]{1,64}", str(spec.get("name"))
            ):
                return constraint(f"toolConfig.tools.{k + 1}.member.toolSpec.name")
            schema = spec.get("inputSchema")
            if not isinstance(schema, dict) or not isinstance(schema.get("json"), dict):
                return constraint(f"toolConfig.tools.{k + 1}.member.toolSpec.inputSchema")
            names.add(spec["name"])
        choice = config.get("toolChoice")
        if choice is not None:
            if not isinstance(choice, dict) or len(choice) != 1:
                return constraint("toolConfig.toolChoice")
            [(kind, value)] = choice.items()
            if kind not in ("auto", "any", "tool") or not isinstance(value, dict):
                return constraint("toolConfig.toolChoice")
            if kind == "tool" and value.get("name") not in names:
                return f"The tool {value.get('name')} in toolConfig.toolChoice is not defined."
    asked: list[str] = []  # the toolUse ids of the assistant message before
    for i, m in enumerate(body["messages"]):
        content = m.get("content") if isinstance(m, dict) else None
        blocks = [b for b in content or () if isinstance(b, dict)]
        uses = [b["toolUse"] for b in blocks if "toolUse" in b]
        results = [b["toolResult"] for b in blocks if "toolResult" in b]
        if (uses or results) and config is None:
            return (
                "The toolConfig field must be defined when using toolUse and toolResult "
                "content blocks."
            )
        for use in uses:
            if not isinstance(use.get("input"), dict) or not use.get("toolUseId"):
                return constraint(f"messages.{i + 1}.member.content.toolUse")
        if m.get("role") == "user" and asked:
            answered = [r.get("toolUseId") for r in results]
            missing = [a for a in asked if a not in answered]
            if len(answered) > len(asked):
                return (
                    f"The number of toolResult blocks at messages.{i}.content exceeds the "
                    "number of toolUse blocks of previous turn."
                )
            if missing:
                return (
                    f"Expected toolResult blocks at messages.{i}.content for the following "
                    f"Ids: {', '.join(missing)}"
                )
        elif results:
            return (
                f"The number of toolResult blocks at messages.{i}.content exceeds the number "
                "of toolUse blocks of previous turn."
            )
        for result in results:
            parts = result.get("content")
            if not isinstance(parts, list) or not all(
                isinstance(p, dict) and len(p) == 1 and ("text" in p or "json" in p) for p in parts
            ):
                return constraint(f"messages.{i + 1}.member.content.toolResult.content")
        asked = [u["toolUseId"] for u in uses] if m.get("role") == "assistant" else []
    return None


def constraint(path: str) -> str:
    return f"1 validation error detected: Value at '{path}' failed to satisfy constraint"
