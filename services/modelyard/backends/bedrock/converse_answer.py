"""Reading a Converse (unary) answer: one JSON body, one `Piece`.

For the models listed in ``non_streaming_models``: Bedrock models whose
``responseStreamingSupported`` is false (GetFoundationModel) answer
ConverseStream with a ValidationException, so they are asked with Converse,
``POST /model/{modelId}/converse``. Its answer (Bedrock Runtime API reference,
API version 2023-09-30, Converse, Response Syntax) is
``{"output": {"message": {"role": "assistant", "content": [{"text"}...]}},
"stopReason", "usage": {"inputTokens", "outputTokens", "totalTokens"},
"metrics": {"latencyMs"}}``: its text blocks joined are the answer, its stop
reason means what `stop_reasons` says. A body not of that shape is
`ProviderProtocolError`.
"""

from __future__ import annotations

import json
from typing import Any

from modelyard.backends.bedrock.stop_reasons import finish_reason
from modelyard.backends.engine import Piece
from modelyard.errors import ProviderProtocolError
from modelyard.scrub import upstream_text


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
    usage = answer["usage"]
    return Piece(
        text,
        finish_reason(backend, model_id, answer["stopReason"]),
        input_tokens=usage["inputTokens"],
        output_tokens=usage["outputTokens"],
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
    return None
