"""Server-sent events as OpenAI-compatible servers send them."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable


async def sse_data(lines: AsyncIterable[bytes]) -> AsyncGenerator[str, None]:
    """The `data` payload of each event (multi-line data joined by newlines)."""
    data: list[str] = []
    async for raw in lines:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue  # comment / keep-alive
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)
