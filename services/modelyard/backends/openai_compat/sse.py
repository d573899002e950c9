"""Server-sent events as OpenAI-compatible servers send them.

`SseParser` is fed bytes exactly as they come off the network and returns
the events each read completed, so a caller can forward everything that
arrived together as one piece (one gRPC message instead of one per event)
without waiting for anything that has not arrived.
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

    def end(self) -> list[str]:
        """At the end of the body: the last event if its lines were complete.

        A line cut off mid-way (no newline) is dropped, as the SSE spec says,
        rather than handing on half an event.
        """
        events = ["\n".join(self._data)] if self._data else []
        self._data, self._partial = [], b""
        return events


async def sse_data(chunks: AsyncIterable[bytes]) -> AsyncGenerator[str, None]:
    """The `data` payload of each event in a body read as `chunks` of any size."""
    parser = SseParser()
    async for chunk in chunks:
        for event in parser.feed(chunk):
            yield event
    for event in parser.end():
        yield event
