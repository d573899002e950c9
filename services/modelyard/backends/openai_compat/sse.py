"""Server-sent events as OpenAI-compatible servers send them."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable


async def sse_data(lines: AsyncIterable[bytes]) -> AsyncGenerator[str, None]:
    """The `data` payload of each event (multi-line data joined by newlines).

    `lines` as aiohttp's `StreamReader` yields them, each with its newline.
    """
    data: list[str] = []
    async for raw in lines:
        if not raw.endswith(b"\n"):
            # Only a body cut off mid-line ends without a newline. Like the SSE
            # spec, drop the unfinished event rather than hand on half of it.
            return
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
