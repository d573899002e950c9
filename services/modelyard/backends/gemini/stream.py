"""Reading ``streamGenerateContent?alt=sse``: server-sent events in, `Piece`s out.

Each event's data is one ``GenerateContentResponse``
(https://ai.google.dev/api/generate-content#v1beta.GenerateContentResponse):
``candidates[0].content.parts[].text`` is the next text (parts marked
``thought`` are the model's thinking, not its answer, and are left out),
``functionCall`` parts are calls, each whole in its part (gathered and sent on
the last piece, as `tools.answer_call` makes them),
``candidates[0].finishReason`` comes on the last one, and ``usageMetadata``
counts the whole call so far (the last one wins). There is no ``[DONE]``: the
stream is over when the body ends, and complete only if a finish reason came
first, else it is `StreamTruncated`. After the finish the stream waits at most
`USAGE_GRACE_S` for the usage, should it come in an event of its own.

How it ends:

- ``STOP``: `FINISH_REASON_STOP`, or `FINISH_REASON_TOOL_CALLS` when the answer
  called functions (Gemini has no finish reason of its own for that);
  ``MAX_TOKENS``: `FINISH_REASON_LENGTH`.
- ``SAFETY``, ``RECITATION``, ``BLOCKLIST``, ``PROHIBITED_CONTENT``, ``SPII``
  and the image ones: `ContentRejected`, naming the reason and the safety
  categories that blocked it, after the text that came before it.
- ``promptFeedback.blockReason`` (the prompt itself was blocked; no
  candidates): `ContentRejected` naming the block.
- ``LANGUAGE`` (a language the model does not take): `ProviderRefusal`.
- any other reason (``OTHER``, ``MALFORMED_FUNCTION_CALL``, ...): `ProviderError`
  naming it: the answer may be incomplete, so it is not passed off as finished.
- an ``error`` event, Google's error object sent mid-stream: the error its
  code and status mean (`upstream.error_for`).
- an event the format does not allow (not JSON, wrong types): `ProviderProtocolError`.

Output tokens are ``candidatesTokenCount`` plus ``thoughtsTokenCount``: Google
bills thinking as output (https://ai.google.dev/gemini-api/docs/pricing).
``cachedContentTokenCount`` (the prompt tokens read from a context cache, implicit
or explicit) is part of ``promptTokenCount``, as `Piece.cached_input_tokens` is of
its input tokens, so both pass as they are.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterable, Mapping
from typing import Any

from modelyard.backends.engine import Piece
from modelyard.backends.gemini.tools import answer_call, function_call_problem
from modelyard.backends.gemini.upstream import GoogleError, Upstream, error_for
from modelyard.backends.openai_compat.sse import SseParser
from modelyard_client.errors import (
    ContentRejected,
    ModelyardError,
    ProviderError,
    ProviderProtocolError,
    ProviderRefusal,
    StreamTruncated,
)
from modelyard_client.scrub import upstream_text
from modelyard_client.v1 import common_pb2

USAGE_GRACE_S = 1.0

FINISHED = {
    "STOP": common_pb2.FINISH_REASON_STOP,
    "MAX_TOKENS": common_pb2.FINISH_REASON_LENGTH,
}
# Candidate.FinishReason values that mean the provider's policy stopped the answer.
CONTENT_POLICY = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
    }
)
_COUNTS = (
    "promptTokenCount",
    "candidatesTokenCount",
    "thoughtsTokenCount",
    "cachedContentTokenCount",
)


class GenerateStream:
    def __init__(self, upstream: Upstream, model_id: str) -> None:
        self._upstream = upstream
        self._model_id = model_id
        self._finish: str | None = None
        self._ratings: list[Any] = []
        self._usage: Mapping[str, Any] = {}
        self._usage_after_finish = False
        self._events = 0
        self._failure: ModelyardError | None = None
        self._calls: list[common_pb2.ToolCall] = []

    async def pieces(self, body: AsyncIterable[bytes]) -> AsyncGenerator[Piece, None]:
        """The answer piece by piece; raises when it did not finish normally."""
        parser = SseParser()
        text = ""
        reads = aiter(body)
        while True:
            try:
                if self._finish is None:
                    chunk = await anext(reads)
                else:
                    chunk = await asyncio.wait_for(anext(reads), USAGE_GRACE_S)
            except (StopAsyncIteration, TimeoutError):
                break
            try:
                events = parser.feed(chunk)
            except UnicodeDecodeError as exc:
                self._failure = self._malformed(f"bytes that are not UTF-8 ({exc.reason})", chunk)
                events = []
            text = self._take(events)
            if self._failure or (self._finish is not None and self._usage_after_finish):
                break
            if text:
                yield Piece(text)
                text = ""
        failure = self._failure or self._ending()
        if failure is not None:
            if text:  # what came before the failure still reaches the caller
                yield Piece(text)
            raise failure
        assert self._finish is not None
        finish = FINISHED[self._finish]
        if self._calls and finish == common_pb2.FINISH_REASON_STOP:
            finish = common_pb2.FINISH_REASON_TOOL_CALLS
        yield Piece(
            text,
            finish,
            input_tokens=self._count("promptTokenCount"),
            output_tokens=self._count("candidatesTokenCount") + self._count("thoughtsTokenCount"),
            cached_input_tokens=self._count("cachedContentTokenCount"),
            tool_calls=tuple(self._calls),
        )

    def _count(self, key: str) -> int:
        return int(self._usage.get(key) or 0)

    def _take(self, events: list[str]) -> str:
        """Apply the events of one read; returns their text (up to a failure, if any)."""
        texts: list[str] = []
        for data in events:
            try:
                response = json.loads(data)
            except ValueError:
                self._failure = self._malformed("not JSON", data)
                break
            problem = _response_problem(response)
            if problem is not None:
                self._failure = self._malformed(problem, data)
                break
            if "error" in response:
                self._failure = self._reported(response["error"])
                break
            self._events += 1
            if response.get("usageMetadata"):
                self._usage = response["usageMetadata"]
                self._usage_after_finish = self._finish is not None or _finishes(response)
            block = (response.get("promptFeedback") or {}).get("blockReason")
            if block:
                self._failure = ContentRejected(
                    f"{self._upstream.label} blocked the prompt for '{self._model_id}' "
                    f"(promptFeedback.blockReason {block}"
                    f"{_categories(response['promptFeedback'].get('safetyRatings'))})",
                    provider_code=block,
                )
                break
            # candidateCount is never sent, so there is one candidate.
            for candidate in (response.get("candidates") or ())[:1]:
                for part in (candidate.get("content") or {}).get("parts") or ():
                    if part.get("text") and not part.get("thought"):
                        texts.append(part["text"])
                    if "functionCall" in part:
                        response_id = str(response.get("responseId") or "")
                        call = answer_call(part["functionCall"], response_id, len(self._calls))
                        self._calls.append(call)
                if candidate.get("finishReason"):
                    self._finish = candidate["finishReason"]
                    self._ratings = candidate.get("safetyRatings") or []
        return "".join(texts)

    def _ending(self) -> ModelyardError | None:
        """Why a stream that ended without a failure event is no finished answer, if it is not."""
        reason, where = self._finish, self._upstream.label
        if reason is None:
            return StreamTruncated(
                f"{where} ended the stream for '{self._model_id}' after {self._events} "
                "event(s) without a finishReason: the answer is truncated"
            )
        if reason in FINISHED:
            return None
        if reason in CONTENT_POLICY:
            return ContentRejected(
                f"{where} stopped the answer for '{self._model_id}' on its content policy "
                f"(finishReason {reason}{_categories(self._ratings)})",
                provider_code=reason,
            )
        if reason == "LANGUAGE":
            return ProviderRefusal(
                f"{where} refused the request for '{self._model_id}': the prompt's language is "
                "not one the model takes (finishReason LANGUAGE)",
                provider_code=reason,
            )
        return ProviderError(
            f"{where} stopped the answer for '{self._model_id}' with finishReason "
            f"{upstream_text(reason, 64)}: the answer may be incomplete"
        )

    def _reported(self, error: Any) -> ModelyardError:
        """The error an ``error`` event reports."""
        if not isinstance(error, dict):
            return ProviderError(
                f"{self._upstream.label} failed mid-stream: {upstream_text(str(error))}"
            )
        code = error.get("code")
        status = code if type(code) is int else 500
        return error_for(self._upstream, status, GoogleError.of(error), self._model_id)

    def _malformed(self, problem: str, data: str | bytes) -> ProviderProtocolError:
        shown = upstream_text(repr(data[:4096]), 200)
        return ProviderProtocolError(
            f"{self._upstream.label} sent a malformed event for '{self._model_id}' "
            f"({problem}): {shown}"
        )


def _finishes(response: Mapping[str, Any]) -> bool:
    return any(c.get("finishReason") for c in response.get("candidates") or ())


def _categories(ratings: Any) -> str:
    """``; blocked: HARM_CATEGORY_...`` for the safety ratings marked blocked (or rated
    HIGH when none is marked), empty when none says."""
    if not isinstance(ratings, list):
        return ""
    rated = [r for r in ratings if isinstance(r, dict) and isinstance(r.get("category"), str)]
    blocked = [r["category"] for r in rated if r.get("blocked")] or [
        r["category"] for r in rated if r.get("probability") == "HIGH"
    ]
    return f"; blocked: {', '.join(blocked)}" if blocked else ""


def _response_problem(response: Any) -> str | None:
    """What makes a decoded event no GenerateContentResponse, or None when it is one."""
    if not isinstance(response, dict):
        return f"a JSON {type(response).__name__}, not an object"
    if "error" in response:
        return None
    usage = response.get("usageMetadata")
    if usage is not None:
        if not isinstance(usage, dict):
            return "usageMetadata is not an object"
        for key in _COUNTS:
            count = usage.get(key)
            if count is not None and (type(count) is not int or count < 0):
                return f"usageMetadata.{key} is {count!r}, not a count"
    feedback = response.get("promptFeedback")
    if feedback is not None and not isinstance(feedback, dict):
        return "promptFeedback is not an object"
    candidates = response.get("candidates")
    if candidates is None:
        return None
    if not isinstance(candidates, list):
        return "candidates is not a list"
    for i, candidate in enumerate(candidates):
        if not isinstance(candidate, dict):
            return f"candidates[{i}] is not an object"
        finish = candidate.get("finishReason")
        if finish is not None and not isinstance(finish, str):
            return f"candidates[{i}].finishReason is {finish!r}, not a string"
        content = candidate.get("content")
        if content is None:
            continue
        if not isinstance(content, dict):
            return f"candidates[{i}].content is not an object"
        parts = content.get("parts")
        if parts is not None and not isinstance(parts, list):
            return f"candidates[{i}].content.parts is not a list"
        for j, part in enumerate(parts or ()):
            if not isinstance(part, dict):
                return f"candidates[{i}].content.parts[{j}] is not an object"
            text = part.get("text")
            if text is not None and not isinstance(text, str):
                return f"candidates[{i}].content.parts[{j}].text is {text!r}, not a string"
            if "functionCall" in part:
                problem = function_call_problem(part["functionCall"])
                if problem is not None:
                    return f"candidates[{i}].content.parts[{j}].{problem}"
    return None
