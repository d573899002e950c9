"""An OpenAI-compatible fake whose answers, request by request and model by model, a test
scripts: HTTP errors with their bodies and headers, resets, and whole answers.

Each scripted fault follows a provider's published behaviour:

- `rate_limited`: OpenAI's 429 (error codes guide,
  https://platform.openai.com/docs/guides/error-codes): ``type`` "requests",
  ``code`` "rate_limit_exceeded", with ``Retry-After`` (seconds) when given;
- `server_error`: OpenAI's 500, "The server had an error processing your
  request.", type "server_error";
- `overloaded`: OpenAI's 503 "Slow Down" / "The engine is currently
  overloaded", ``Retry-After`` optional; `anthropic_overloaded`: Anthropic's
  529 ``{"type": "error", "error": {"type": "overloaded_error", "message":
  "Overloaded"}}`` (https://docs.anthropic.com/en/api/errors);
- `context_length_exceeded`: OpenAI's 400 invalid_request_error, code
  "context_length_exceeded", param "messages";
- `content_policy`: OpenAI's 400 invalid_request_error, code
  "content_policy_violation";
- `RESET`: the connection closed before a status line, as a crashed or
  restarting server (or a proxy dropping it) does;
- `ANSWER`: a streamed chat completion naming the model, its usage in the
  last chunk (``stream_options.include_usage``).

It is a `FakeUpstream` (openai_fake.py): `bodies` and `headers` as there,
plus `seen`, when (monotonic) each chat request arrived and for which model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from backends.openai_compat.openai_fake import FakeUpstream, _sse, chunk, usage_chunk


@dataclass(frozen=True)
class Status:
    """An HTTP error answer with a JSON body."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Reset:
    """Close the connection before any byte of an answer."""


@dataclass(frozen=True)
class Answer:
    """A whole streamed answer: `pieces` pieces of ``"<model>;"``, a stop, usage."""

    pieces: int = 2
    prompt_tokens: int = 7
    completion_tokens: int = 2


RESET = Reset()
ANSWER = Answer()
Scripted = Status | Reset | Answer


def _openai(message: str, type_: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def rate_limited(retry_after: str | None = None) -> Status:
    body = _openai(
        "Rate limit reached for requests per min (RPM): Limit 3, Used 3, Requested 1.",
        "requests",
        "rate_limit_exceeded",
    )
    return Status(429, body, {"Retry-After": retry_after} if retry_after else {})


def server_error() -> Status:
    return Status(
        500, _openai("The server had an error processing your request.", "server_error", None)
    )


def overloaded(retry_after: str | None = None) -> Status:
    body = _openai(
        "The engine is currently overloaded, please try again later", "server_error", None
    )
    return Status(503, body, {"Retry-After": retry_after} if retry_after else {})


def anthropic_overloaded() -> Status:
    return Status(
        529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    )


def context_length_exceeded(limit: int = 4097) -> Status:
    message = (
        f"This model's maximum context length is {limit} tokens. However, your messages "
        f"resulted in {limit + 903} tokens. Please reduce the length of the messages."
    )
    return Status(
        400, _openai(message, "invalid_request_error", "context_length_exceeded", "messages")
    )


def content_policy() -> Status:
    message = "Your request was rejected as a result of our safety system."
    return Status(400, _openai(message, "invalid_request_error", "content_policy_violation"))


@dataclass
class FaultyUpstream(FakeUpstream):
    """`script(model, answers...)`: the model's requests get these answers in turn, the
    last one again for every later request; a model without a script answers `ANSWER`."""

    scripts: dict[str, list[Scripted]] = field(default_factory=dict)
    seen: list[tuple[str, float]] = field(default_factory=list)  # (model, monotonic time)

    def __post_init__(self) -> None:
        self._chat = self._scripted

    def script(self, model: str, *answers: Scripted) -> None:
        self.scripts[model] = list(answers)

    def seen_for(self, model: str) -> list[float]:
        return [at for m, at in self.seen if m == model]

    async def _scripted(self, request: web.Request) -> web.StreamResponse:
        model = (await request.json())["model"]
        self.seen.append((model, time.monotonic()))
        script = self.scripts.get(model) or [ANSWER]
        answer = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(answer, Status):
            return web.json_response(answer.body, status=answer.status, headers=answer.headers)
        if isinstance(answer, Reset):
            assert request.transport is not None
            request.transport.abort()
            return web.Response()  # never sent: the connection is gone
        return await self._answer(request, model, answer)

    async def _answer(self, request: web.Request, model: str, answer: Answer) -> web.StreamResponse:
        resp = await self._start_stream(request)
        for _ in range(answer.pieces):
            await resp.write(_sse(chunk(f"{model};", model=model)))
        await resp.write(_sse(chunk(finish_reason="stop", model=model)))
        await resp.write(_sse(usage_chunk(answer.prompt_tokens, answer.completion_tokens)))
        await resp.write(_sse("[DONE]"))
        await resp.write_eof()
        return resp
