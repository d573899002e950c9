"""Reading a Converse (unary) answer: one JSON body, one `Piece`.

For the models listed in ``non_streaming_models``: Bedrock models whose
``responseStreamingSupported`` is false (GetFoundationModel) answer
ConverseStream with a ValidationException, so they are asked with Converse,
``POST /model/{modelId}/converse``. Its answer (Bedrock Runtime API reference,
API version 2023-09-30, Converse, Response Syntax) is
``{"output": {"message": {"role": "assistant", "content": [{"text"} | {"toolUse"}...]}},
"stopReason", "usage": {"inputTokens", "outputTokens", "totalTokens",
"cacheReadInputTokens", "cacheWriteInputTokens"}, "metrics": {"latencyMs"}}``:
its text blocks joined are the answer, its ``toolUse`` blocks the calls
(`converse_tools`), its stop reason means what `stop_reasons` says. A body not of
that shape is `ProviderProtocolError`.

Usage, streamed or not (`last_piece`): Bedrock counts ``inputTokens`` apart
from the prompt-cache reads and writes (``cacheReadInputTokens``,
``cacheWriteInputTokens``, as Anthropic's API does), so the input tokens are the
three together and the cached input tokens the reads; a cache write is billed
as input (at a premium on some models, which the catalog has no figure for).
"""

from __future__ import annotations

import json
from typing import Any

from modelyard.backends.bedrock.converse_tools import answer_tool_calls, tool_use_problem
from modelyard.backends.bedrock.stop_reasons import finish_reason
from modelyard.backends.engine import Piece
from modelyard_client.errors import ProviderProtocolError
from modelyard_client.scrub import upstream_text
from modelyard_client.v1 import common_pb2


def converse_piece(backend: str, model_id: str, body: bytes) -> Piece:
    """The whole answer of a Converse call as one finished piece (or the error it means)."""
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    problem = _problem(answer)
    if problem is not None:
        raise ProviderProtocolError(
            f"Bedrock backend '{backend}' sent a malformed Converse answer for '{model_id}' "
            f"({problem}): {upstream_text(repr(body[:4096]), 200)}"
        )
    content = answer["output"]["message"]["content"]
    text = "".join(block.get("text", "") for block in content)
    finish = finish_reason(backend, model_id, answer["stopReason"])
    return last_piece(text, finish, answer_tool_calls(content), answer["usage"])


def last_piece(
    text: str,
    finish: common_pb2.FinishReason.ValueType,
    tool_calls: tuple[common_pb2.ToolCall, ...],
    usage: dict[str, Any],
) -> Piece:
    """An answer's last piece, with the counts of its ``TokenUsage`` (checked by
    `usage_problem`; see the module doc for the cache's)."""
    cached = usage.get("cacheReadInputTokens") or 0
    return Piece(
        text,
        finish,
        input_tokens=usage["inputTokens"] + cached + (usage.get("cacheWriteInputTokens") or 0),
        output_tokens=usage["outputTokens"],
        cached_input_tokens=cached,
        tool_calls=tool_calls,
    )


def _problem(answer: Any) -> str | None:
    """What makes `answer` no Converse answer, or None when it is one."""
    if not isinstance(answer, dict):
        return "not a JSON object"
    output = answer.get("output")
    message = output.get("message") if isinstance(output, dict) else None
    if not isinstance(message, dict) or not isinstance(message.get("content"), list):
        return "no output.message.content list"
    for i, block in enumerate(message["content"]):
        if not isinstance(block, dict) or not isinstance(block.get("text", ""), str):
            return f"output.message.content[{i}] is not a content block"
        if "toolUse" in block:
            problem = tool_use_problem(block["toolUse"])
            if problem is not None:
                return f"output.message.content[{i}].{problem}"
    if not isinstance(answer.get("stopReason"), str) or not answer["stopReason"]:
        return "no stopReason"
    return usage_problem(answer.get("usage"))


def usage_problem(usage: Any) -> str | None:
    """What makes `usage` no TokenUsage (both counts whole and >= 0), or None."""
    if not isinstance(usage, dict):
        return "no usage"
    for key in ("inputTokens", "outputTokens"):
        count = usage.get(key)
        if type(count) is not int or count < 0:
            return f"usage.{key} is {count!r}, not a count"
    for key in ("cacheReadInputTokens", "cacheWriteInputTokens"):
        count = usage.get(key)
        if count is not None and (type(count) is not int or count < 0):
            return f"usage.{key} is {count!r}, not a count"
    return None
