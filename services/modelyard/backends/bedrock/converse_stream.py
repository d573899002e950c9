"""Reading a ConverseStream answer: AWS event-stream messages in, `Piece`s out.

The body is ``application/vnd.amazon.eventstream``: binary messages, each a
prelude (total and headers length, CRC32), headers, a JSON payload and a
CRC32 of the whole (https://docs.aws.amazon.com/transcribe/latest/dg/event-stream.html
describes the framing; botocore's `EventStreamBuffer` decodes it and checks
both CRCs). ``:event-type`` names the event of ConverseStream's output union
(Bedrock Runtime API reference, API version 2023-09-30, ConverseStreamOutput):
``messageStart``, ``contentBlockStart``, ``contentBlockDelta`` (``delta.text``),
``contentBlockStop``, ``messageStop`` (``stopReason``), ``metadata``
(``usage``: `converse_answer.last_piece`, ``metrics``). A call's
``contentBlockStart.start.toolUse`` and its ``delta.toolUse.input`` fragments
are gathered by ``contentBlockIndex`` (`converse_tools.ToolUseBlocks`) and sent
whole on the last piece. An exception event
(``:message-type exception``, its type in ``:exception-type``) ends the stream
with the error `failures.failure` names; a generic error message
(``:message-type error``, ``:error-code``) with `ProviderError`.

The answer is complete only with its ``messageStop`` and its ``metadata`` (sent
last, with the token counts): a stream that ends without both is
`StreamTruncated`, never passed off as finished. Its stop reason means what
`stop_reasons` says (``content_filtered``, ``guardrail_intervened``:
`ContentRejected`).
Bytes that are not event-stream framing, a CRC that does not match, a payload
that is not the event's JSON: `ProviderProtocolError`.

What arrived in one network read travels as one piece, as in the OpenAI-wire
engine, so a fast upstream costs a few gRPC messages and a slow one still
streams token by token.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterable
from typing import Any, cast

from botocore.eventstream import EventStreamBuffer, EventStreamMessage, ParserError

from modelyard.backends.bedrock.converse_answer import last_piece, usage_problem
from modelyard.backends.bedrock.converse_tools import ToolUseBlocks, tool_use_start_problem
from modelyard.backends.bedrock.failures import failure
from modelyard.backends.bedrock.stop_reasons import finish_reason
from modelyard.backends.engine import Piece
from modelyard_client.errors import (
    ModelyardError,
    ProviderError,
    ProviderProtocolError,
    StreamTruncated,
)
from modelyard_client.scrub import upstream_text
from modelyard_client.v1 import common_pb2

EVENT_STREAM = "application/vnd.amazon.eventstream"


class ConverseStreamReader:
    def __init__(self, backend: str, model_id: str) -> None:
        self._backend = backend
        self._model_id = model_id
        self._stop_reason: str | None = None
        self._usage: dict[str, Any] | None = None
        self._deltas = 0
        self._failure: ModelyardError | None = None
        self._calls = ToolUseBlocks()

    async def pieces(self, body: AsyncIterable[bytes]) -> AsyncGenerator[Piece, None]:
        """The answer piece by piece; raises when it failed or never finished."""
        framing = EventStreamBuffer()
        text = ""
        async for chunk in body:
            framing.add_data(chunk)
            text += self._take(framing)
            if self._failure is not None or self._finished:
                break
            if text:
                yield Piece(text)
                text = ""
        if self._failure is None and not self._finished:
            self._failure = StreamTruncated(
                f"Bedrock backend '{self._backend}' ended the stream for '{self._model_id}' "
                f"after {self._deltas} delta(s) without "
                f"{'its metadata' if self._stop_reason else 'a messageStop'}: "
                "the answer is truncated"
            )
        finish = common_pb2.FINISH_REASON_UNSPECIFIED
        if self._failure is None:
            assert self._stop_reason is not None and self._usage is not None
            try:
                finish = finish_reason(self._backend, self._model_id, self._stop_reason)
            except ModelyardError as exc:
                self._failure = exc
        if self._failure is not None:
            if text:  # what arrived before the failure still reaches the caller
                yield Piece(text)
            raise self._failure
        assert self._usage is not None
        calls = self._calls.whole()
        if isinstance(calls, str):  # input that is no arguments: nothing a caller could run
            raise self._malformed(calls, b"")
        yield last_piece(text, finish, calls, self._usage)

    @property
    def _finished(self) -> bool:
        return self._stop_reason is not None and self._usage is not None

    def _take(self, framing: EventStreamBuffer) -> str:
        """Apply every whole message buffered so far; returns their text."""
        texts = []
        try:
            for message in framing:
                texts.append(self._apply(message))
                if self._failure is not None:
                    break
        except ParserError as exc:
            self._failure = self._malformed(f"framing: {exc}", b"")
        return "".join(texts)

    def _apply(self, message: EventStreamMessage) -> str:
        # botocore-stubs types `headers` as an int; it is the parsed name -> value dict.
        headers = cast("dict[str, Any]", message.headers)
        kind = headers.get(":message-type")
        if kind == "exception":
            self._failure = self._exception(str(headers.get(":exception-type", "")), message)
            return ""
        if kind == "error":
            self._failure = ProviderError(
                f"Bedrock backend '{self._backend}' failed mid-stream for '{self._model_id}': "
                f"{upstream_text(str(headers.get(':error-code', '')))}: "
                f"{upstream_text(str(headers.get(':error-message', '')))}"
            )
            return ""
        event = headers.get(":event-type")
        try:
            payload = json.loads(message.payload or b"{}")
        except ValueError:
            self._failure = self._malformed(f"{event} payload is not JSON", message.payload)
            return ""
        if not isinstance(payload, dict):
            self._failure = self._malformed(f"{event} payload is not an object", message.payload)
            return ""
        if event == "contentBlockStart":
            problem = tool_use_start_problem(payload.get("start"))
            index = payload.get("contentBlockIndex")
            if problem is None and type(index) is not int:
                problem = f"contentBlockIndex is {index!r}, not an index"
            if problem is not None:
                self._failure = self._malformed(problem, message.payload)
            elif "toolUse" in (payload.get("start") or {}):
                assert isinstance(index, int)
                self._calls.start(index, payload["start"]["toolUse"])
            return ""
        if event == "contentBlockDelta":
            delta = payload.get("delta")
            if not isinstance(delta, dict):
                self._failure = self._malformed("contentBlockDelta without delta", message.payload)
                return ""
            if "toolUse" in delta:
                self._failure = self._tool_input(payload, delta["toolUse"], message.payload)
                return ""
            text = delta.get("text", "")
            if not isinstance(text, str):
                self._failure = self._malformed("delta.text is not a string", message.payload)
                return ""
            if text:
                self._deltas += 1
            return text
        if event == "messageStop":
            reason = payload.get("stopReason")
            if not isinstance(reason, str) or not reason:
                self._failure = self._malformed("messageStop without stopReason", message.payload)
                return ""
            self._stop_reason = reason
        elif event == "metadata":
            usage = payload.get("usage")
            problem = usage_problem(usage)
            if problem is not None:
                self._failure = self._malformed(problem, message.payload)
                return ""
            assert isinstance(usage, dict)
            self._usage = usage
        # messageStart, contentBlockStart/Stop and events added later carry no text.
        return ""

    def _tool_input(
        self, payload: dict[str, Any], tool_use: Any, raw: bytes
    ) -> ModelyardError | None:
        """Add a ``delta.toolUse.input`` fragment to its call; the failure it is, if any."""
        fragment = tool_use.get("input") if isinstance(tool_use, dict) else None
        index = payload.get("contentBlockIndex")
        if not isinstance(fragment, str) or type(index) is not int:
            return self._malformed("delta.toolUse without its input string and index", raw)
        problem = self._calls.add(index, fragment)
        return None if problem is None else self._malformed(problem, raw)

    def _exception(self, exception_type: str, message: EventStreamMessage) -> ModelyardError:
        try:
            payload = json.loads(message.payload or b"{}")
        except ValueError:
            payload = {}
        said = payload.get("message") if isinstance(payload, dict) else None
        text = said if isinstance(said, str) else message.payload.decode("utf-8", "replace")
        # Exception events name the type in lowerCamelCase: throttlingException.
        type_ = exception_type[:1].upper() + exception_type[1:]
        return failure(self._backend, self._model_id, type_, text, streamed=self._deltas > 0)

    def _malformed(self, problem: str, data: bytes) -> ProviderProtocolError:
        shown = upstream_text(repr(data[:4096]), 200)
        return ProviderProtocolError(
            f"Bedrock backend '{self._backend}' sent a malformed event stream for "
            f"'{self._model_id}' ({problem}): {shown}"
        )
