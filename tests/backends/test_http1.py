"""backends/http1.py against a raw TCP server on 127.0.0.1 that writes exactly the bytes
each test gives it (RFC 9112's framing: Content-Length, chunked with extensions and
trailers, close-delimited), cut wherever the test says."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from modelyard.backends.http1 import Http1Pool, HttpBodyCut, HttpMalformed, HttpUnreachable

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
JSON = {"Content-Type": "application/json"}


class RawServer:
    """Counts connections and the requests read; `handler` answers each connection."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        body = await reader.readexactly(length)
        self.requests.append(head + body)
        return body

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


def answering(
    *answers: bytes, split: int = 0, keep_open: bool = True
) -> Callable[[RawServer], Handler]:
    """A handler writing `answers` in turn, one per request read on the connection;
    `split` > 0 writes each in pieces of that many bytes (separate TCP segments)."""

    def make(server: RawServer) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            for answer in answers:
                await server.read_request(reader)
                pieces = (
                    [answer[i : i + split] for i in range(0, len(answer), split)]
                    if split
                    else [answer]
                )
                for piece in pieces:
                    writer.write(piece)
                    await writer.drain()
                    if split:
                        await asyncio.sleep(0.001)
            if keep_open:
                await reader.read()  # until the client closes

        return handle

    return make


async def serve(make: Callable[[RawServer], Handler]) -> RawServer:
    server = RawServer(lambda r, w: asyncio.sleep(0))
    server.handler = make(server)
    return await server.__aenter__()


async def body_of(pool: Http1Pool, timeout_s: float | None = 5.0) -> tuple[int, bytes]:
    async with await pool.post("/chat", b'{"a":1}', JSON, timeout_s) as resp:
        return resp.status, await resp.read()


def chunked(*parts: bytes, trailer: bytes = b"") -> bytes:
    body = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in parts)
    return body + b"0\r\n" + trailer + b"\r\n"


OK_LENGTH = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Thing: a\r\nx-thing: b\r\n\r\nhello"
OK_CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n"
    + chunked(b"data: one\n\n", b"data: two\n\n", trailer=b"X-Trailer: t\r\n")
)


@pytest.fixture
async def servers() -> AsyncIterator[list[RawServer]]:
    started: list[RawServer] = []
    yield started
    for server in started:
        await server.__aexit__()


async def test_a_content_length_answer_is_read_and_its_connection_reused(
    servers: list[RawServer],
) -> None:
    server = await serve(answering(OK_LENGTH, OK_LENGTH))
    servers.append(server)
    pool = Http1Pool(server.url)
    async with await pool.post("/chat", b'{"a":1}', JSON, 5.0) as resp:
        assert (resp.status, resp.headers.get("X-THING"), resp.headers["x-thing"]) == (
            200,
            "a, b",
            "a, b",
        )
        assert await resp.read() == b"hello"
    assert await body_of(pool) == (200, b"hello")
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /v1/chat HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"Content-Type: application/json\r\n" in first and first.endswith(b'\r\n\r\n{"a":1}')
    await pool.close()


@pytest.mark.parametrize("split", [0, 1, 7])
async def test_a_chunked_answer_cut_anywhere_in_segments_is_whole(
    servers: list[RawServer], split: int
) -> None:
    server = await serve(answering(OK_CHUNKED, OK_LENGTH, split=split))
    servers.append(server)
    pool = Http1Pool(server.url)
    assert await body_of(pool) == (200, b"data: one\n\ndata: two\n\n")
    assert await body_of(pool) == (200, b"hello")  # the trailer was read: the next answer parses
    assert server.connections == 1
    await pool.close()


async def test_pieces_arrive_as_they_are_sent(servers: list[RawServer]) -> None:
    gate = asyncio.Event()

    def make(server: RawServer) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
            await gate.wait()
            writer.write(b"4\r\nlast\r\n0\r\n\r\n")
            await reader.read()

        return handle

    server = await serve(make)
    servers.append(server)
    pool = Http1Pool(server.url)
    async with await pool.post("/chat", b"{}", JSON, 5.0) as resp:
        pieces = resp.iter_any()
        assert await anext(pieces) == b"first"  # before the rest was even written
        gate.set()
        assert [p async for p in pieces] == [b"last"]
    await pool.close()


async def test_a_body_until_close_ends_with_the_connection(servers: list[RawServer]) -> None:
    answer = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it"
    server = await serve(answering(answer, keep_open=False))
    servers.append(server)
    pool = Http1Pool(server.url)
    assert await body_of(pool) == (200, b"all of it")
    await pool.close()


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nonly this",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\ndata: one",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n",
    ],
    ids=["content-length", "mid-chunk", "no-last-chunk"],
)
async def test_a_body_cut_short_is_an_error_not_an_end(
    servers: list[RawServer], answer: bytes
) -> None:
    server = await serve(answering(answer, keep_open=False))
    servers.append(server)
    pool = Http1Pool(server.url)
    with pytest.raises(HttpBodyCut, match="before the body was whole"):
        await body_of(pool)
    await pool.close()


async def test_a_pooled_connection_the_server_closed_is_replaced_unseen(
    servers: list[RawServer],
) -> None:
    # The server answers one request per connection, then closes it without saying so.
    server = await serve(answering(OK_LENGTH, keep_open=False))
    servers.append(server)
    pool = Http1Pool(server.url)
    assert await body_of(pool) == (200, b"hello")
    await asyncio.sleep(0.05)  # the close reaches the idle connection
    assert await body_of(pool) == (200, b"hello")
    assert server.connections == 2
    await pool.close()


async def test_a_reused_connection_closed_as_the_request_goes_is_retried_once(
    servers: list[RawServer],
) -> None:
    calls = 0

    def make(server: RawServer) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal calls
            await server.read_request(reader)
            calls += 1
            writer.write(OK_LENGTH)
            await writer.drain()
            if calls == 1:  # the next request on this connection: read, then dropped unanswered
                await server.read_request(reader)
                return
            await reader.read()

        return handle

    server = await serve(make)
    servers.append(server)
    pool = Http1Pool(server.url)
    assert await body_of(pool) == (200, b"hello")
    assert await body_of(pool) == (200, b"hello")
    assert server.connections == 2 and len(server.requests) == 3
    await pool.close()


async def test_a_new_connection_that_breaks_before_an_answer_is_unreachable(
    servers: list[RawServer],
) -> None:
    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")

    server = await serve(lambda _: drop)
    servers.append(server)
    pool = Http1Pool(server.url)
    with pytest.raises(HttpUnreachable, match="closed before an answer"):
        await body_of(pool)
    assert server.connections == 1  # a fresh connection is not retried: it may have been read
    await pool.close()


async def test_no_listener_is_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pool = Http1Pool(f"http://127.0.0.1:{port}")
    with pytest.raises(HttpUnreachable, match=f"cannot connect to 127.0.0.1:{port}"):
        await body_of(pool)


async def test_silence_past_the_read_timeout_is_a_timeout(servers: list[RawServer]) -> None:
    def make(server: RawServer) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n")
            await reader.read()

        return handle

    server = await serve(make)
    servers.append(server)
    pool = Http1Pool(server.url)
    async with await pool.post("/chat", b"{}", JSON, 0.1) as resp:
        pieces = resp.iter_any()
        assert await anext(pieces) == b"a"
        with pytest.raises(TimeoutError):
            await anext(pieces)
    await pool.close()


async def test_an_interim_100_continue_is_skipped(servers: list[RawServer]) -> None:
    server = await serve(answering(b"HTTP/1.1 100 Continue\r\n\r\n" + OK_LENGTH))
    servers.append(server)
    pool = Http1Pool(server.url)
    assert await body_of(pool) == (200, b"hello")
    await pool.close()


async def test_an_answer_left_unread_closes_its_connection(servers: list[RawServer]) -> None:
    def make(server: RawServer) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            if server.connections == 1:  # the rest of this body never comes
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n")
            else:
                writer.write(OK_LENGTH)
            await reader.read()

        return handle

    server = await serve(make)
    servers.append(server)
    pool = Http1Pool(server.url)
    async with await pool.post("/chat", b"{}", JSON, 5.0) as resp:
        assert resp.status == 200  # left before its body is whole
    assert await body_of(pool) == (200, b"hello")
    assert server.connections == 2
    await pool.close()


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "status line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "header line"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "invalid literal"),
    ],
)
async def test_what_is_not_http_is_malformed(
    servers: list[RawServer], answer: bytes, problem: str
) -> None:
    server = await serve(answering(answer))
    servers.append(server)
    pool = Http1Pool(server.url)
    with pytest.raises(HttpMalformed, match=problem):
        await body_of(pool)
    await pool.close()


def test_only_http_urls_are_taken() -> None:
    with pytest.raises(ValueError, match="not an http"):
        Http1Pool("ftp://example.com/v1")
    pool = Http1Pool("https://api.example.com/v1/")
    assert (pool.host, pool.port, pool.path_prefix) == ("api.example.com", 443, "/v1")
    assert pool.request_bytes("POST", "/x", {}, b"").startswith(
        b"POST /v1/x HTTP/1.1\r\nHost: api.example.com\r\n"
    )
