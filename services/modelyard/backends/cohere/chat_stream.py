"""Reading a streamed Cohere Chat v2 answer: SSE events in, `Piece`s out.

The events, per Cohere's streaming guide (https://docs.cohere.com/v2/docs/streaming)
and its Chat v2 streaming reference (https://docs.cohere.com/v2/reference/chat-stream):
each is ``event: <type>`` and ``data: <JSON object with the same "type">``.
``message-start``, ``content-start``, then one ``content-delta`` per token
(``delta.message.content.text``), ``content-end`` and one ``message-end``
whose ``delta`` carries the ``finish_reason`` and the ``usage``
(``billed_units`` and ``tokens``, each ``input_tokens`` and
``output_tokens``). A tool plan (``tool-plan-delta``) is passed on as text and
the ``tool-call-*`` events are gathered into whole calls on the last piece,
with finish reason ``TOOL_CALL`` (`tools.ToolCallEvents`); citation events
carry no answer text and are passed over, as is a reasoning model's
``thinking`` content. A call whose events are not the reference's, or whose
arguments are no JSON object, is `ProviderProtocolError`.

The answer is complete only at ``message-end``: a body that ends before it,
``data: [DONE]`` included, is `StreamTruncated`. A ``message-end`` with finish
reason ``ERROR`` ("the generation failed due to an internal error", with
the ``delta.error`` message) is `BackendUnavailable`; ``TIMEOUT`` (stopped at
Cohere's time limit) is `StreamTruncated`, since the answer is cut. An event
that is not what the reference describes is `ProviderProtocolError`.

Token counts: ``billed_units`` first, as the gateway prices them from the
catalog and these are what Cohere bills; ``tokens`` (which counts what
Cohere adds to the prompt too) when there are no billed units. Chat v2's
usage reports no cached input (its ``Usage`` is ``billed_units`` and
``tokens`` only), so `Piece.cached_input_tokens` stays 0.

Everything that arrived in one network read is forwarded as one piece, the
finish reason riding on the last, as the OpenAI-wire stream does.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterable
from typing import Any

from modelyard.backends.cohere.tools import TOOL_EVENTS, ToolCallEvents, tool_event_problem
from modelyard.backends.engine import Piece
from modelyard.backends.openai_compat.sse import SseParser
from modelyard_client.errors import (
    BackendUnavailable,
    ModelyardError,
    ProviderProtocolError,
    StreamTruncated,
)
from modelyard_client.scrub import upstream_text
from modelyard_client.v1 import common_pb2

FINISH_REASONS: dict[str, common_pb2.FinishReason.ValueType] = {
    "COMPLETE": common_pb2.FINISH_REASON_STOP,
    "STOP_SEQUENCE": common_pb2.FINISH_REASON_STOP,
    "MAX_TOKENS": common_pb2.FINISH_REASON_LENGTH,
    "TOOL_CALL": common_pb2.FINISH_REASON_TOOL_CALLS,
    # Listed by earlier Chat v2 SDKs (cohere-python's ChatFinishReason, "content_blocked").
    "CONTENT_BLOCKED": common_pb2.FINISH_REASON_CONTENT_FILTER,
}
FAILED = "ERROR"
TIMED_OUT = "TIMEOUT"


class CohereChatStream:
    def __init__(self, provider: str, model_id: str) -> None:
        self._provider = provider
        self._model_id = model_id
        self._text_events = 0
        self._end: dict[str, Any] | None = None  # the message-end event's delta
        self._done = False  # ``data: [DONE]`` came: nothing more will
        self._failure: ModelyardError | None = None
        self._tools = ToolCallEvents()

    async def pieces(self, body: AsyncIterable[bytes]) -> AsyncGenerator[Piece, None]:
        """The answer piece by piece; raises if it did not end with ``message-end``."""
        parser = SseParser()
        text = ""
        async for chunk in body:
            try:
                events = parser.feed(chunk)
            except UnicodeDecodeError as exc:
                self._failure = self._malformed(f"bytes that are not UTF-8 ({exc.reason})", chunk)
                events = []
            text = self._take(events)
            if self._failure is not None or self._end is not None or self._done:
                break
            if text:
                yield Piece(text)
                text = ""
        finish = common_pb2.FINISH_REASON_UNSPECIFIED
        if self._failure is None and self._end is None:
            self._failure = StreamTruncated(
                f"upstream '{self._provider}' ended the stream for '{self._model_id}' after "
                f"{self._text_events} piece(s) without its message-end: the answer is truncated"
            )
        elif self._failure is None and self._end is not None:
            finish = self._finish(self._end)
        if self._failure is not None:
            if text:  # what arrived before the failure still reaches the caller
                yield Piece(text)
            raise self._failure
        calls: tuple[common_pb2.ToolCall, ...] = ()
        if finish == common_pb2.FINISH_REASON_TOOL_CALLS:
            none = "finish_reason TOOL_CALL without a tool call"
            gathered = self._tools.whole() if self._tools else none
            if isinstance(gathered, str):
                if text:
                    yield Piece(text)
                raise ProviderProtocolError(
                    f"upstream '{self._provider}' sent a tool call for '{self._model_id}' "
                    f"that cannot be run ({upstream_text(gathered, 200)})"
                )
            calls = gathered
        input_tokens, output_tokens = self._usage(self._end or {})
        yield Piece(
            text, finish, input_tokens=input_tokens, output_tokens=output_tokens, tool_calls=calls
        )

    def _take(self, events: list[str]) -> str:
        """Apply the events of one read; returns their text (up to a failure or the end)."""
        texts = []
        for data in events:
            if data == "[DONE]":  # before message-end: reported as the truncation it is
                self._done = True
                break
            try:
                event = json.loads(data)
            except ValueError:
                self._failure = self._malformed("not JSON", data)
                break
            problem = _event_problem(event)
            if problem is None and event["type"] in TOOL_EVENTS:
                problem = tool_event_problem(event)
                if problem is None and self._tools.unstarted(event):
                    problem = f"tool-call-delta for call {event['index']}, which never started"
            if problem is not None:
                self._failure = self._malformed(problem, data)
                break
            if event["type"] in TOOL_EVENTS:
                plan = self._tools.take(event)
                if plan:
                    self._text_events += 1
                    texts.append(plan)
            elif event["type"] == "content-delta":
                piece = event["delta"]["message"]["content"].get("text")
                if piece:
                    self._text_events += 1
                    texts.append(piece)
            elif event["type"] == "message-end":
                self._end = event.get("delta") or {}
                break
        return "".join(texts)

    def _finish(self, end: dict[str, Any]) -> common_pb2.FinishReason.ValueType:
        reason = end.get("finish_reason")
        where = f"upstream '{self._provider}'"
        if reason == FAILED:
            detail = upstream_text(str(end.get("error") or "an internal error"))
            self._failure = BackendUnavailable(
                f"{where} failed generating for '{self._model_id}' (finish_reason ERROR): {detail}"
            )
        elif reason == TIMED_OUT:
            self._failure = StreamTruncated(
                f"{where} stopped generating for '{self._model_id}' at its time limit "
                f"(finish_reason TIMEOUT): the answer is truncated"
            )
        elif reason not in FINISH_REASONS:
            self._failure = self._malformed(f"finish_reason {reason!r}", json.dumps(end))
        return FINISH_REASONS.get(str(reason), common_pb2.FINISH_REASON_UNSPECIFIED)

    def _usage(self, end: dict[str, Any]) -> tuple[int, int]:
        usage = end.get("usage") or {}
        for part in ("billed_units", "tokens"):
            counts = usage.get(part)
            if counts:
                return int(counts.get("input_tokens") or 0), int(counts.get("output_tokens") or 0)
        # No usage at all: count the text events, one token each as Cohere streams them.
        return 0, self._text_events

    def _malformed(self, problem: str, data: str | bytes) -> ProviderProtocolError:
        # Scrubbed over more than is kept, so a key cut by the 200-byte cap is not half shown.
        shown = upstream_text(repr(data[:4096]), 200)
        return ProviderProtocolError(
            f"upstream '{self._provider}' sent a malformed event for '{self._model_id}' "
            f"({problem}): {shown}"
        )


def _event_problem(event: Any) -> str | None:
    """What makes a decoded event no Chat v2 stream event, or None when it is one."""
    if not isinstance(event, dict):
        return f"a JSON {type(event).__name__}, not an object"
    kind = event.get("type")
    if not isinstance(kind, str):
        return "no event type"
    if kind == "content-delta":
        content = _path(event, "delta", "message", "content")
        if not isinstance(content, dict):
            return "content-delta without delta.message.content"
        text = content.get("text")
        if text is not None and not isinstance(text, str):
            return f"delta.message.content.text is {text!r}, not a string"
    elif kind == "message-end":
        delta = event.get("delta")
        if delta is not None and not isinstance(delta, dict):
            return "message-end's delta is not an object"
        return _usage_problem((delta or {}).get("usage"))
    return None


def _usage_problem(usage: Any) -> str | None:
    if usage is None:
        return None
    if not isinstance(usage, dict):
        return "usage is not an object"
    for part in ("billed_units", "tokens"):
        counts = usage.get(part)
        if counts is None:
            continue
        if not isinstance(counts, dict):
            return f"usage.{part} is not an object"
        for key in ("input_tokens", "output_tokens"):
            n = counts.get(key)
            # The reference types them as numbers (format double): 12.0 is a count too.
            if n is not None and (
                isinstance(n, bool) or not isinstance(n, int | float) or n < 0 or n != int(n)
            ):
                return f"usage.{part}.{key} is {n!r}, not a count"
    return None


def _path(value: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value
