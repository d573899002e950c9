"""Reading a streamed chat completion: SSE events in, `Piece`s out.

Everything that arrived in one network read is forwarded as one piece, and
the finish reason rides on the last piece when it came with the last text,
so a fast upstream costs a few gRPC messages rather than one per token while
a slow one still streams token by token.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterable
from typing import Any

from modelyard.backends.engine import FINISH_REASONS, Piece
from modelyard.backends.openai_compat.sse import SseParser
from modelyard.errors import ProviderError, StreamTruncated
from modelyard.v1 import common_pb2


class ChatStream:
    def __init__(self, provider: str, model_id: str) -> None:
        self._provider = provider
        self._model_id = model_id
        self._finish: str | None = None
        self._usage: dict[str, Any] = {}
        self._text_events = 0
        self._done = False
        self._failure: ProviderError | None = None

    async def pieces(self, body: AsyncIterable[bytes]) -> AsyncGenerator[Piece, None]:
        """The answer piece by piece; raises `StreamTruncated` if it never finished."""
        parser = SseParser()
        text = ""
        async for chunk in body:
            text = self._take(parser.feed(chunk))
            if self._done or self._failure:
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
        yield Piece(
            text,
            FINISH_REASONS.get(self._finish, common_pb2.FINISH_REASON_STOP),
            input_tokens=int(self._usage.get("prompt_tokens") or 0),
            # llama_cpp.server, among others, sends no usage when streaming: then
            # count the text events (one token each on llama.cpp-style servers).
            output_tokens=int(self._usage.get("completion_tokens") or self._text_events),
        )

    def _take(self, events: list[str]) -> str:
        """Apply the events of one read; returns their text (up to a failure, if any)."""
        texts = []
        for data in events:
            if data == "[DONE]":
                self._done = True
                break
            try:
                chunk = json.loads(data)
            except ValueError:
                self._failure = ProviderError(
                    f"upstream '{self._provider}' sent a malformed event: {data[:200]!r}"
                )
                break
            if "error" in chunk:
                self._failure = ProviderError(
                    f"upstream '{self._provider}' failed mid-stream: {chunk['error']}"
                )
                break
            self._usage = chunk.get("usage") or self._usage
            for choice in chunk.get("choices") or ():
                content = (choice.get("delta") or {}).get("content") or ""
                if content:
                    self._text_events += 1
                    texts.append(content)
                self._finish = choice.get("finish_reason") or self._finish
        return "".join(texts)
