"""Reading a streamed chat completion: SSE events in, `Piece`s out.

Everything that arrived in one network read is forwarded as one piece, and
the finish reason rides on the last piece when it came with the last text,
so a fast upstream costs a few gRPC messages rather than one per token while
a slow one still streams token by token.

An event the chat-completion chunk format does not allow (not JSON, not an
object, ``choices`` not a list of objects, text that is not a string, token
counts that are not counts, bytes that are not UTF-8) ends the stream with
`ProviderProtocolError` naming what is wrong; an ``error`` event, the
upstream's own report of a failure, with `ProviderError`, or with the refusal
its ``code`` names (``context_length_exceeded``: `ContextLengthExceeded`,
``content_policy_violation``: `ContentRejected`; `upstream.refusal_for`), as
servers that only find out once streaming send it.

A stream is over at ``data: [DONE]``, and also as soon as it has both its
finish reason and its usage (OpenAI sends the usage in one chunk after the
finish when ``include_usage`` is set): an upstream that then neither sends
[DONE] nor closes does not hold the call. After a finish without usage the
stream waits `USAGE_GRACE_S` for it, then ends with what it has. The usage's
``prompt_tokens_details.cached_tokens`` (OpenAI's prompt caching; OpenRouter
passes it on) is the last piece's `cached_input_tokens`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable
from typing import Any

import msgspec

from modelyard.backends.engine import FINISH_REASONS, Piece
from modelyard.backends.openai_compat.sse import SseParser
from modelyard.backends.openai_compat.tools import ToolCallFragments, tool_call_deltas_problem
from modelyard.backends.openai_compat.upstream import refusal_for
from modelyard_client.errors import (
    ModelyardError,
    ProviderError,
    ProviderProtocolError,
    StreamTruncated,
)
from modelyard_client.scrub import upstream_text
from modelyard_client.v1 import common_pb2

# After the finish reason, how long the usage chunk may take before the answer is
# finalised without it (and with the counted text events as its output tokens).
USAGE_GRACE_S = 1.0


class ChatStream:
    def __init__(self, provider: str, model_id: str, dropped: tuple[str, ...] = ()) -> None:
        """`dropped`: the parameters left out of the request, named on the last piece."""
        self._provider = provider
        self._model_id = model_id
        self._dropped = dropped
        self._finish: str | None = None
        self._usage: dict[str, Any] = {}
        self._text_events = 0
        self._done = False
        self._failure: ModelyardError | None = None
        self._calls = ToolCallFragments()

    async def pieces(self, body: AsyncIterable[bytes]) -> AsyncGenerator[Piece, None]:
        """The answer piece by piece; raises `StreamTruncated` if it never finished."""
        parser = SseParser()
        text = ""
        reads = aiter(body)
        while True:
            try:
                if self._finish is None:
                    chunk = await anext(reads)
                else:  # finished: the usage, or [DONE], or nothing more is coming
                    chunk = await asyncio.wait_for(anext(reads), USAGE_GRACE_S)
            except (StopAsyncIteration, TimeoutError):
                break
            try:
                events = parser.feed(chunk)
            except UnicodeDecodeError as exc:
                self._failure = self._malformed(f"bytes that are not UTF-8 ({exc.reason})", chunk)
                events = []
            text = self._take(events)
            if self._done or self._failure or (self._finish is not None and self._usage):
                break
            if text:
                yield Piece(text)
                text = ""
        if self._failure or self._finish is None:
            if text:  # what arrived before the failure still reaches the caller
                yield Piece(text)
            raise self._failure or StreamTruncated(
                f"upstream '{self._provider}' ended the stream for '{self._model_id}' after "
                f"{self._text_events} piece(s) without a finish_reason: the answer is truncated"
            )
        calls = self._calls.whole()
        if isinstance(calls, str):  # a call without its name: nothing the caller could run
            raise self._malformed(calls, "")
        yield Piece(
            text,
            FINISH_REASONS.get(self._finish, common_pb2.FINISH_REASON_STOP),
            tool_calls=calls,
            input_tokens=int(self._usage.get("prompt_tokens") or 0),
            # llama_cpp.server, among others, sends no usage when streaming: then
            # count the text events (one token each on llama.cpp-style servers).
            output_tokens=int(self._usage.get("completion_tokens") or self._text_events),
            cached_input_tokens=_cached_tokens(self._usage),
            dropped_params=self._dropped,
        )

    def _take(self, events: list[str]) -> str:
        """Apply the events of one read; returns their text (up to a failure, if any)."""
        texts = []
        for data in events:
            if data == "[DONE]":
                self._done = True
                break
            try:
                # msgspec: the standard json's objects at a fifth of its cost (~0.4 µs an event)
                chunk = msgspec.json.decode(data)
            except msgspec.DecodeError:
                self._failure = self._malformed("not JSON", data)
                break
            problem = _chunk_problem(chunk)
            if problem is not None:
                self._failure = self._malformed(problem, data)
                break
            if "error" in chunk:
                self._failure = self._reported(chunk["error"])
                break
            self._usage = chunk.get("usage") or self._usage
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") or {}
                content = delta.get("content") or ""
                if delta.get("tool_calls"):
                    self._calls.add(delta["tool_calls"])
                if content:
                    self._text_events += 1
                    texts.append(content)
                self._finish = choice.get("finish_reason") or self._finish
        return "".join(texts)

    def _reported(self, error: Any) -> ModelyardError:
        """The error an ``error`` event reports."""
        if isinstance(error, dict) and isinstance(error.get("code"), str):
            refusal = refusal_for(
                error["code"],
                f"upstream '{self._provider}' refused the request mid-stream: "
                f"{upstream_text(str(error.get('message', error)))}",
            )
            if refusal is not None:
                return refusal
        return ProviderError(
            f"upstream '{self._provider}' failed mid-stream: {upstream_text(str(error))}"
        )

    def _malformed(self, problem: str, data: str | bytes) -> ProviderProtocolError:
        # Scrubbed over more than is kept, so a key cut by the 200-byte cap is not half shown.
        shown = upstream_text(repr(data[:4096]), 200)
        return ProviderProtocolError(
            f"upstream '{self._provider}' sent a malformed event for '{self._model_id}' "
            f"({problem}): {shown}"
        )


def _chunk_problem(chunk: Any) -> str | None:
    """What makes a decoded event no chat-completion chunk, or None when it is one."""
    if not isinstance(chunk, dict):
        return f"a JSON {type(chunk).__name__}, not an object"
    if "error" in chunk:
        return None  # the upstream's own failure report: ProviderError, not a protocol fault
    usage = chunk.get("usage")
    if usage is not None:
        if not isinstance(usage, dict):
            return "usage is not an object"
        for key in ("prompt_tokens", "completion_tokens"):
            count = usage.get(key)
            if count is not None and (type(count) is not int or count < 0):
                return f"usage.{key} is {count!r}, not a count"
        details = usage.get("prompt_tokens_details")
        if details is not None:
            if not isinstance(details, dict):
                return "usage.prompt_tokens_details is not an object"
            cached = details.get("cached_tokens")
            if cached is not None and (type(cached) is not int or cached < 0):
                return f"usage.prompt_tokens_details.cached_tokens is {cached!r}, not a count"
    choices = chunk.get("choices")
    if choices is None:
        return None
    if not isinstance(choices, list):
        return "choices is not a list"
    for i, choice in enumerate(choices):
        if not isinstance(choice, dict):
            return f"choices[{i}] is not an object"
        delta = choice.get("delta")
        if delta is not None and not isinstance(delta, dict):
            return f"choices[{i}].delta is not an object"
        content = (delta or {}).get("content")
        if content is not None and not isinstance(content, str):
            return f"choices[{i}].delta.content is {content!r}, not a string"
        finish = choice.get("finish_reason")
        if finish is not None and not isinstance(finish, str):
            return f"choices[{i}].finish_reason is {finish!r}, not a string"
        calls = (delta or {}).get("tool_calls")
        if calls is not None:
            problem = tool_call_deltas_problem(calls)
            if problem is not None:
                return f"choices[{i}].delta.{problem}"
    return None


def _cached_tokens(usage: dict[str, Any]) -> int:
    """The prompt tokens the provider read from its cache (OpenAI's
    ``usage.prompt_tokens_details.cached_tokens``, checked by `_chunk_problem`)."""
    details = usage.get("prompt_tokens_details")
    return int((details or {}).get("cached_tokens") or 0)
