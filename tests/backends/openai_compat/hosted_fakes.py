"""Mistral and OpenRouter as the OpenAI wire's fake (`openai_fake.FakeUpstream`) plays them.

Mistral (https://docs.mistral.ai/api/, chat completion, read 2026-12-02): its request
validation refuses any field it does not know with a 422 whose body is
``{"object": "error", "message": {"detail": [{"type": "extra_forbidden", "loc":
["body", <field>], "msg": "Extra inputs are not permitted", "input": ...}]}, "type":
"invalid_request_error", "param": null, "code": null}`` (the shape quoted in
mistralai/platform-docs-public#7 and #212, and in client issues such as
openai/openai-agents-python#442 for ``stream_options``); other errors are the flat
``{"object": "error", "message", "type", "param", "code"}``. Its stream carries the
usage on the chunk with the finish reason, unasked.

OpenRouter (https://openrouter.ai/docs/api-reference/errors, read 2026-12-02): errors are
``{"error": {"code": <the HTTP status>, "message", "metadata"?}}``: 402 out of credits,
403 moderation (``metadata``: ``reasons``, ``flagged_input``, ``provider_name``,
``model_slug``), 408 timed out, 429, 502 the model's provider down or answering nonsense
(``metadata``: ``provider_name``, ``raw``), 503 no provider for the routing. Its stream
sends ``: OPENROUTER PROCESSING`` comments while it waits for the provider.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from backends.openai_compat.openai_fake import FakeUpstream, chunk

# The top-level fields of Mistral's ChatCompletionRequest.
MISTRAL_FIELDS = frozenset(
    {
        "model",
        "temperature",
        "top_p",
        "max_tokens",
        "stream",
        "stop",
        "random_seed",
        "messages",
        "response_format",
        "tools",
        "tool_choice",
        "presence_penalty",
        "frequency_penalty",
        "n",
        "prediction",
        "parallel_tool_calls",
        "prompt_mode",
        "safe_prompt",
    }
)


def mistral_error(message: Any, type_: str, code: str | None = None) -> dict[str, Any]:
    return {"object": "error", "message": message, "type": type_, "param": None, "code": code}


def mistral_extra_forbidden(fields: dict[str, Any]) -> dict[str, Any]:
    """The 422 body for request fields Mistral does not know."""
    detail = [
        {
            "type": "extra_forbidden",
            "loc": ["body", name],
            "msg": "Extra inputs are not permitted",
            "input": value,
        }
        for name, value in fields.items()
    ]
    return mistral_error({"detail": detail}, "invalid_request_error")


def openrouter_error(
    status: int, message: str, metadata: dict[str, Any] | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": status, "message": message}
    if metadata is not None:
        error["metadata"] = metadata
    return {"error": error}


def mistral_last_chunk(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    """Mistral's last streamed chunk: the finish reason and the usage together."""
    last = chunk(finish_reason="stop", model="mistral-small-latest")
    last["usage"] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    return last


@dataclass
class MistralUpstream(FakeUpstream):
    """Refuses, as Mistral does, a request with a field it does not know (422)."""

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        extra = {k: v for k, v in body.items() if k not in MISTRAL_FIELDS}
        if extra:
            self.bodies.append(body)
            return web.json_response(mistral_extra_forbidden(extra), status=422)
        return await super()._chat_completions(request)


def openrouter_processing_then(upstream: FakeUpstream, events: list[dict[str, Any]]) -> None:
    """Answer with OpenRouter's keep-alive comment first, then `events` and [DONE]."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b": OPENROUTER PROCESSING\n\n")
        for event in events:
            await resp.write(f"data: {json.dumps(event)}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    upstream._chat = handler
