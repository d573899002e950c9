"""`sse_data`: the data payload of each server-sent event, fed lines as aiohttp yields them.

aiohttp's `StreamReader` iterates a body line by line, each line keeping its
``\\n``; only the very last line of a body that was cut off can lack it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from modelyard.backends.openai_compat.sse import sse_data


async def _lines(raw: list[bytes]) -> AsyncIterator[bytes]:
    for line in raw:
        yield line


async def _events(*raw: bytes) -> list[str]:
    return [data async for data in sse_data(_lines(list(raw)))]


async def test_each_blank_line_ends_one_event() -> None:
    assert await _events(b"data: one\n", b"\n", b"data: two\n", b"\n") == ["one", "two"]


async def test_multi_line_data_is_joined_with_newlines() -> None:
    events = await _events(
        b"data: first\n", b"data: second\n", b"data:\n", b"data: fourth\n", b"\n"
    )
    assert events == ["first\nsecond\n\nfourth"]


async def test_comments_are_skipped_even_inside_an_event() -> None:
    events = await _events(
        b": keep-alive\n",
        b"\n",  # a comment-only event dispatches nothing
        b"data: a\n",
        b": OPENROUTER PROCESSING\n",
        b"data: b\n",
        b"\n",
    )
    assert events == ["a\nb"]


async def test_crlf_line_endings() -> None:
    events = await _events(b"data: a\r\n", b"\r\n", b"data: b\r\n", b"data: c\r\n", b"\r\n")
    assert events == ["a", "b\nc"]


async def test_an_event_the_body_ends_before_its_blank_line_is_discarded() -> None:
    # Its lines are whole but only a blank line dispatches an event; at the end of the
    # stream pending data is discarded (WHATWG HTML, interpreting an event stream).
    assert await _events(b"data: one\n", b"\n", b"data: [DONE]\n") == ["one"]


async def test_other_fields_are_ignored() -> None:
    events = await _events(b"event: message\n", b"id: 7\n", b"retry: 1000\n", b"data: x\n", b"\n")
    assert events == ["x"]


@pytest.mark.parametrize(
    ("line", "payload"),
    [
        (b"data:x\n", "x"),  # the space after the colon is optional
        (b"data:  two spaces\n", " two spaces"),  # only one space is removed
        (b"data\n", ""),  # a field name alone has an empty value
        (b'data: {"url": "http://h:1"}\n', '{"url": "http://h:1"}'),  # colons in the value
        ("data: héllo ✓\n".encode(), "héllo ✓"),
    ],
)
async def test_data_field_values(line: bytes, payload: str) -> None:
    assert await _events(line, b"\n") == [payload]


async def test_blank_lines_alone_dispatch_nothing() -> None:
    assert await _events(b"\n", b"\r\n", b"\n") == []
    assert await _events() == []


async def test_a_line_cut_off_at_the_end_of_the_body_is_dropped_not_delivered() -> None:
    # The connection closed mid-line: the half event is not data (the SSE spec
    # discards an unfinished event at end of stream); parsing it as JSON would
    # turn a truncation into a "malformed event".
    events = await _events(b"data: complete\n", b"\n", b'data: {"choices": [{"del')
    assert events == ["complete"]


def test_parser_completes_events_across_arbitrary_read_boundaries() -> None:
    from modelyard.backends.openai_compat.sse import SseParser

    body = 'data: {"t": "é"}\n\ndata: two\r\n\r\ndata: [DONE]\n\n'.encode()
    for size in (1, 2, 3, 7, len(body)):
        parser = SseParser()
        events = []
        for start in range(0, len(body), size):
            events.extend(parser.feed(body[start : start + size]))
        assert events == ['{"t": "é"}', "two", "[DONE]"], size


def test_parser_returns_every_event_one_read_completed() -> None:
    from modelyard.backends.openai_compat.sse import SseParser

    parser = SseParser()
    assert parser.feed(b"data: a\n\ndata: b\n\ndata: c") == ["a", "b"]
    assert parser.feed(b"\n\n") == ["c"]
    assert parser.feed(b"data: cut") == []
    assert parser.feed(b"\n") == []  # a whole line, but no blank line yet
    assert parser.feed(b"\r\n") == ["cut"]
