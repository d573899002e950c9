"""Server-sent events as OpenAI-compatible servers send them.

`SseParser` is fed bytes exactly as they come off the network and returns
the events each read completed, so a caller can forward everything that
arrived together as one piece (one gRPC message instead of one per event)
without waiting for anything that has not arrived.

Only the blank line that ends an event dispatches it. When the body ends,
whatever is pending (an event without its blank line, a line without its
newline) is discarded, as the WHATWG HTML specification's event stream
interpretation says: the connection closed mid-event, so that event is
incomplete, not data. llama.cpp's server ends every event with its blank
line, the last (``data: [DONE]``) included; and a chat stream is complete
once its finish_reason has arrived, whether or not ``[DONE]`` follows.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable


class SseParser:
    """Incremental parser of an SSE body: ``data`` payloads, comments and other fields skipped."""

    def __init__(self) -> None:
        self._partial = b""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[str]:
        """The `data` of each event completed by `chunk` (multi-line data joined by newlines)."""
        # Split bytes, not text: a newline byte never occurs inside a UTF-8 sequence.
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        events: list[str] = []
        for raw in lines:
            line = raw.rstrip(b"\r").decode("utf-8")
            if not line:
                if self._data:
                    events.append("\n".join(self._data))
                    self._data = []
            elif not line.startswith(":"):  # ":" starts a comment / keep-alive
                name, _, value = line.partition(":")
                if name == "data":
                    self._data.append(value[1:] if value.startswith(" ") else value)
        return events


async def sse_data(chunks: AsyncIterable[bytes]) -> AsyncGenerator[str, None]:
    """The `data` payload of each complete event in a body read as `chunks` of any size."""
    parser = SseParser()
    async for chunk in chunks:
        for event in parser.feed(chunk):
            yield event
