"""Reading a streamed Messages API answer: SSE events in, `Piece`s out.

The events, per https://docs.anthropic.com/en/docs/build-with-claude/streaming
(``anthropic-version: 2023-06-01``): ``message_start`` (the message with its
``usage``: ``input_tokens``, ``cache_creation_input_tokens``,
``cache_read_input_tokens``), then per content block ``content_block_start``,
``content_block_delta`` (``text_delta`` carries text, ``input_json_delta`` a
piece of a ``tool_use`` block's arguments, gathered into whole calls by
`tools.ToolUseBlocks`; thinking and citation deltas carry nothing this
contract shows) and ``content_block_stop``, then ``message_delta``
(``stop_reason`` and the cumulative ``usage``), and ``message_stop``; ``ping``
may come anywhere, and an event type the reference does not name yet is
skipped, as it asks. Everything that arrived in one network read goes out as
one piece; the calls ride on the last, with ``stop_reason: "tool_use"``
(FINISH_REASON_TOOL_CALLS). A call begun but cut by another stop reason
(``max_tokens``) is no call the caller could run and is left off.

The answer is complete at ``message_stop`` and only then: a body that ends
before it is `StreamTruncated`, never a finished answer. An ``error`` event
(``overloaded_error`` after a 200, say) ends the stream with the error its
type means (`upstream.error_for`); an event the format does not allow (not
JSON, no ``type``, text that is not a string, counts that are not counts, a
tool call without its id or name or whose input is no JSON object) with
`ProviderProtocolError`. Text that arrived before either still reaches the
caller first.

Usage: the contract's input tokens are the whole prompt ("of input_tokens,
those read from the cache" are `Piece.cached_input_tokens`), while the API's
``input_tokens`` counts only those after the last cache breakpoint. So input
is ``input_tokens + cache_creation_input_tokens + cache_read_input_tokens``,
and ``cache_read_input_tokens`` is the cached part, priced at the catalog's
cached-input price. Cache writes count as plain input (the contract has no
field for them; Anthropic bills them at 1.25x input, so the cost is a little
under the bill when a prompt is first cached).
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterable
from typing import Any

from modelyard.backends.anthropic.tools import ToolUseBlocks, block_problem
from modelyard.backends.anthropic.upstream import error_for
from modelyard.backends.engine import Piece
from modelyard.backends.openai_compat.sse import SseParser
from modelyard_client.errors import ModelyardError, ProviderProtocolError, StreamTruncated
from modelyard_client.scrub import upstream_text
from modelyard_client.v1 import common_pb2

# https://platform.claude.com/docs/en/build-with-claude/handling-stop-reasons; any other
# (``pause_turn`` comes only with server tools, which are never sent) is a STOP.
STOP_REASONS: dict[str, common_pb2.FinishReason.ValueType] = {
    "end_turn": common_pb2.FINISH_REASON_STOP,
    "stop_sequence": common_pb2.FINISH_REASON_STOP,
    "max_tokens": common_pb2.FINISH_REASON_LENGTH,
    "model_context_window_exceeded": common_pb2.FINISH_REASON_LENGTH,
    "tool_use": common_pb2.FINISH_REASON_TOOL_CALLS,
    "refusal": common_pb2.FINISH_REASON_CONTENT_FILTER,
}
_BLOCKS = {"content_block_start": "content_block", "content_block_delta": "delta"}
INPUT_COUNTS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


class MessageStream:
    """One streamed answer of model `model_id` from upstream `provider`."""

    def __init__(self, provider: str, model_id: str) -> None:
        self._provider = provider
        self._model_id = model_id
        self._counts: dict[str, int] = {}
        self._stop_reason = ""
        self._text_events = 0
        self._stopped = False
        self._failure: ModelyardError | None = None
        self._tools = ToolUseBlocks()

    async def pieces(self, body: AsyncIterable[bytes]) -> AsyncGenerator[Piece, None]:
        """The answer piece by piece; raises `StreamTruncated` if it never reached
        ``message_stop``, or the error the stream reported."""
        parser = SseParser()
        text = ""
        async for chunk in body:
            try:
                events = parser.feed(chunk)
            except UnicodeDecodeError as exc:
                self._failure = self._malformed(f"bytes that are not UTF-8 ({exc.reason})", chunk)
                events = []
            text = self._take(events)
            if self._stopped or self._failure:
                break
            if text:
                yield Piece(text)
                text = ""
        if self._failure or not self._stopped:
            if text:  # what arrived before the failure still reaches the caller
                yield Piece(text)
            raise self._failure or StreamTruncated(
                f"upstream '{self._provider}' ended the stream for '{self._model_id}' after "
                f"{self._text_events} text piece(s) without message_stop: the answer is truncated"
            )
        finish = STOP_REASONS.get(self._stop_reason, common_pb2.FINISH_REASON_STOP)
        calls: tuple[common_pb2.ToolCall, ...] = ()
        if finish == common_pb2.FINISH_REASON_TOOL_CALLS:
            none = "stop_reason tool_use without a tool_use block"
            gathered = self._tools.whole() if self._tools else none
            if isinstance(gathered, str):
                if text:
                    yield Piece(text)
                raise ProviderProtocolError(
                    f"upstream '{self._provider}' sent a tool call for '{self._model_id}' "
                    f"that cannot be run ({upstream_text(gathered, 200)})"
                )
            calls = gathered
        yield Piece(
            text,
            finish,
            input_tokens=sum(self._counts.get(k, 0) for k in INPUT_COUNTS),
            output_tokens=self._counts.get("output_tokens", 0),
            tool_calls=calls,
            cached_input_tokens=self._counts.get("cache_read_input_tokens", 0),
        )

    def _take(self, events: list[str]) -> str:
        """Apply the events of one read; returns their text (up to a failure or the stop)."""
        texts = []
        for data in events:
            try:
                event = json.loads(data)
            except ValueError:
                self._failure = self._malformed("not JSON", data)
                break
            problem = _event_problem(event)
            if problem is None and event["type"] in _BLOCKS:
                kind = event["type"]
                problem = block_problem(kind, event[_BLOCKS[kind]], self._tools, event.get("index"))
            if problem is not None:
                self._failure = self._malformed(problem, data)
                break
            kind = event["type"]
            if kind == "error":
                error = event.get("error")
                error = error if isinstance(error, dict) else {}
                error_type = error.get("type")
                self._failure = error_for(
                    f"upstream '{self._provider}'",
                    None,
                    error_type if isinstance(error_type, str) else "",
                    str(error.get("message", event)),
                    model=self._model_id,
                )
                break
            if kind == "message_start":
                self._count(event["message"].get("usage"))
            elif kind == "message_delta":
                self._stop_reason = event["delta"].get("stop_reason") or self._stop_reason
                self._count(event.get("usage"))
            elif kind in _BLOCKS:
                block = event[_BLOCKS[kind]]
                if block.get("type") in ("text", "text_delta") and block.get("text"):
                    self._text_events += 1
                    texts.append(block["text"])
                elif block.get("type") == "tool_use":
                    self._tools.start(event["index"], block)
                elif block.get("type") == "input_json_delta":
                    self._tools.add(event["index"], block["partial_json"])
            elif kind == "message_stop":
                self._stopped = True
                break
        return "".join(texts)

    def _count(self, usage: Any) -> None:
        # message_delta's usage is cumulative: its counts replace message_start's.
        for key, count in (usage or {}).items():
            if isinstance(count, int) and not isinstance(count, bool):
                self._counts[key] = count

    def _malformed(self, problem: str, data: str | bytes) -> ProviderProtocolError:
        # Scrubbed over more than is kept, so a key cut by the 200-byte cap is not half shown.
        shown = upstream_text(repr(data[:4096]), 200)
        return ProviderProtocolError(
            f"upstream '{self._provider}' sent a malformed event for '{self._model_id}' "
            f"({problem}): {shown}"
        )


# Where each event type keeps its object, which must be one when the type is present.
_OBJECTS = {
    "message_start": "message",
    "content_block_start": "content_block",
    "content_block_delta": "delta",
    "message_delta": "delta",
}


def _event_problem(event: Any) -> str | None:
    """What makes a decoded event no Messages API stream event, or None when it is one."""
    if not isinstance(event, dict):
        return f"a JSON {type(event).__name__}, not an object"
    kind = event.get("type")
    if not isinstance(kind, str):
        return "no event type"
    key = _OBJECTS.get(kind)
    if key is None:
        return None
    value = event.get(key)
    if not isinstance(value, dict):
        return f"{kind}.{key} is not an object"
    if kind in ("content_block_start", "content_block_delta"):
        text = value.get("text")
        if value.get("type") in ("text", "text_delta") and not isinstance(text, str):
            return f"{kind}.{key}.text is {text!r}, not a string"
    if kind == "message_delta":
        reason = value.get("stop_reason")
        if reason is not None and not isinstance(reason, str):
            return f"message_delta.delta.stop_reason is {reason!r}, not a string"
    usage = event.get("usage") if kind == "message_delta" else value.get("usage")
    if usage is None:
        return None
    if not isinstance(usage, dict):
        return f"{kind} usage is not an object"
    for name in (*INPUT_COUNTS, "output_tokens"):
        count = usage.get(name)
        if count is not None and (type(count) is not int or count < 0):
            return f"{kind} usage.{name} is {count!r}, not a count"
    return None
