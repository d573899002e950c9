"""A lean HTTP/1.1 client for the hot path: one POST per call, its answer streamed, over
pooled keep-alive connections to one origin.

aiohttp's client costs about 0.3 ms of CPU per streamed chat completion here, a third
of the gateway's whole call; most of it is generic machinery the hot path does not
use (cookie jars, tracing signals, multidicts, redirects, payload registries). This
is what the hot path needs and no more: an `asyncio.Protocol` per connection that
parses the status line and headers, then the body as ``Content-Length``, chunked
transfer coding, or until the connection closes, handing each piece of the body to
the reader as it arrives. The figures are in docs/benchmarks.md ("The upstream HTTP
client").

- `Http1Pool.post`: the response once its status line and headers are in, or
  `HttpUnreachable` (no connection, or it broke before any byte of the answer:
  nothing reached the caller, a retry may pass) or `TimeoutError` (no connection
  within `connect_timeout_s`, or no answer within `read_timeout_s`). A pooled
  connection the server closed meanwhile is retried once on a fresh one, before
  any byte of the answer came (the request was then never read).
- `Http1Response.iter_any`: the body as it arrives (`BodyPieces`); `HttpBodyCut` when the
  connection ends before the body's framing says it is whole, `TimeoutError` when
  nothing arrives within `read_timeout_s` (aiohttp's ``sock_read``).
- `HttpMalformed`: what came is not an HTTP/1.1 response (its head or its chunked
  framing), raised where the answer is read.
- A connection goes back to the pool once its response was read whole and neither
  side said ``Connection: close``; a response left unread closes its connection.
  Idle connections are dropped after `keepalive_s`.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Mapping
from types import TracebackType
from urllib.parse import urlsplit

# Past this much body waiting for its reader, the socket is not read (flow control).
_HIGH_WATER = 1 << 20
_MAX_HEAD = 64 * 1024  # a status line and headers longer than this are refused


class HttpUnreachable(OSError):
    """No answer began: the connection could not be made, or broke before any byte."""


class HttpBodyCut(Exception):
    """The connection ended before the response's body was whole."""


class HttpMalformed(Exception):
    """The server's bytes are not an HTTP/1.1 response (its head, or its chunked framing)."""


class Headers(dict[str, str]):
    """Response headers by lower-cased name (a repeated one: its values joined by ", ")."""

    def get(self, name: str, default: str = "") -> str:  # type: ignore[override]
        return super().get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())


class _Connection(asyncio.Protocol):
    """One keep-alive connection: parses each response into its head and body pieces."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._reset()

    def _reset(self) -> None:
        self._buf = bytearray()
        self._head: asyncio.Future[None] | None = None  # set by `expect`
        self.status = 0
        self.headers = Headers()
        self.keep_alive = True
        self.got_bytes = False  # any byte of this response
        self._in_body = False
        self._remaining = -1  # Content-Length left; -1: none (chunked or until close)
        self._chunked = False
        self._chunk_left = 0  # data bytes left in the current chunk; 0: a size line next
        self._chunk_crlf = False  # the CRLF after a chunk's data is next
        self._trailers = False  # the last chunk was read: trailers until an empty line
        self.done = False  # the body is whole
        self._pieces: list[bytes] = []
        self._buffered = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self.error: BaseException | None = None

    # ---- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self._head is None:  # bytes while idle: the server is not speaking HTTP to us
            self._fail(HttpMalformed("the server sent bytes outside any response"))
            return
        self.got_bytes = True
        try:
            if not self._in_body:
                self._buf += data
                if not self._parse_head():
                    return
                data, self._buf = bytes(self._buf), bytearray()
                if not data and not self.done:
                    return
            self._body(data)
        except ValueError as exc:
            self._fail(HttpMalformed(f"a malformed response: {exc}"))

    def eof_received(self) -> bool | None:
        if self._in_body and self._remaining < 0 and not self._chunked and not self.done:
            self._finish()  # a body framed by the connection's end
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.keep_alive = False
        if self._head is not None and not self.done:
            if self._in_body and self._remaining < 0 and not self._chunked:
                self._finish()
            else:
                why = f": {exc}" if exc else ""
                self._fail(
                    HttpBodyCut(f"the connection closed before the body was whole{why}")
                    if self._in_body
                    else ConnectionResetError(f"the connection closed before an answer{why}")
                )

    def pause_writing(self) -> None:  # the request is one write; nothing to hold back
        pass

    def resume_writing(self) -> None:
        pass

    # ---- parsing ------------------------------------------------------------------

    def _parse_head(self) -> bool:
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > _MAX_HEAD:
                raise ValueError(f"headers over {_MAX_HEAD} bytes")
            return False
        lines = bytes(self._buf[:end]).decode("latin-1").split("\r\n")
        del self._buf[: end + 4]
        version, _, rest = lines[0].partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise ValueError(f"status line {lines[0][:100]!r}")
        status = int(code)
        if status < 200:  # 100 Continue and other interim answers: the real one follows
            return self._parse_head() if self._buf else False
        found: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise ValueError(f"header line {line[:100]!r}")
            key, value = name.strip().lower(), value.strip()
            found[key] = f"{found[key]}, {value}" if key in found else value
        self.headers = Headers(found)
        self.status = status
        connection = found.get("connection", "").lower()
        self.keep_alive = version == "HTTP/1.1" and "close" not in connection
        if "chunked" in found.get("transfer-encoding", "").lower():
            self._chunked = True
        elif "content-length" in found:
            self._remaining = int(found["content-length"])
        elif status in (204, 304):
            self._remaining = 0
        else:
            self.keep_alive = False  # the body ends with the connection
        self._in_body = True
        if self._remaining == 0:
            self._finish()
        assert self._head is not None
        if not self._head.done():
            self._head.set_result(None)
        return True

    def _body(self, data: bytes) -> None:
        if self._chunked:
            self._dechunk(data)
        elif self._remaining >= 0:
            if len(data) >= self._remaining:
                if len(data) > self._remaining:
                    self.keep_alive = False  # bytes past the body: not ours to read next
                self._push(data[: self._remaining])
                self._remaining = 0
                self._finish()
            else:
                self._remaining -= len(data)
                self._push(data)
        elif data:
            self._push(data)

    def _dechunk(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos = 0
        out: list[bytes] = []
        while not self.done:
            if self._trailers:
                if buf.startswith(b"\r\n", pos):
                    pos += 2
                    self._finish()
                    break
                end = buf.find(b"\r\n\r\n", pos)
                if end < 0:
                    break
                pos = end + 4
                self._finish()
                break
            if self._chunk_crlf:
                if len(buf) - pos < 2:
                    break
                if buf[pos : pos + 2] != b"\r\n":
                    raise ValueError("no CRLF after a chunk")
                pos += 2
                self._chunk_crlf = False
            if self._chunk_left == 0:
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    if len(buf) - pos > 1024:
                        raise ValueError("a chunk size line over 1 KiB")
                    break
                size = int(bytes(buf[pos:end]).split(b";", 1)[0].strip() or b"x", 16)
                pos = end + 2
                if size == 0:
                    self._trailers = True
                    continue
                self._chunk_left = size
            take = min(self._chunk_left, len(buf) - pos)
            if take <= 0:
                break
            out.append(bytes(buf[pos : pos + take]))
            pos += take
            self._chunk_left -= take
            if self._chunk_left == 0:
                self._chunk_crlf = True
        del buf[:pos]
        if out:
            self._push(out[0] if len(out) == 1 else b"".join(out))
        if self.done and buf:
            self.keep_alive = False

    def _push(self, piece: bytes) -> None:
        if not piece:
            return
        self._pieces.append(piece)
        self._buffered += len(piece)
        if self._buffered > _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def _finish(self) -> None:
        self.done = True
        self._wake()

    def _fail(self, exc: BaseException) -> None:
        self.error = exc
        self.keep_alive = False
        if self._head is not None and not self._head.done():
            self._head.set_exception(exc)
        self._wake()
        if self.transport is not None:
            self.transport.close()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ---- what the response reads ---------------------------------------------------

    def expect(self) -> asyncio.Future[None]:
        """Ready for the next response; the future is done once its head is in."""
        self._reset()
        self._head = self._loop.create_future()
        return self._head

    def take(self) -> bytes:
        """The body that has arrived and not been taken, joined ("" when none)."""
        pieces = self._pieces
        if not pieces:
            return b""
        self._pieces = []
        self._buffered = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    async def more(self, timeout_s: float | None) -> None:
        """Wait until more of the body, its end or an error is in; `TimeoutError` after
        `timeout_s` (None: no bound) with nothing."""
        waiter = self._waiter = self._loop.create_future()
        timer = None if timeout_s is None else self._loop.call_later(timeout_s, _expire, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class BodyPieces:
    """`Http1Response.iter_any`: an async iterator, not an async generator. A generator
    its reader leaves unfinished (a stream read up to its finish, not to its end) is
    closed by the event loop's finalizer hook: a wake-up of the loop from another
    thread and a task, per call (measured: ~4 % of a streamed call's CPU)."""

    __slots__ = ("_conn", "_read_timeout_s")

    def __init__(self, conn: _Connection, read_timeout_s: float | None) -> None:
        self._conn = conn
        self._read_timeout_s = read_timeout_s

    def __aiter__(self) -> BodyPieces:
        return self

    async def __anext__(self) -> bytes:
        conn = self._conn
        while True:
            piece = conn.take()
            if piece:
                return piece
            if conn.error is not None:
                raise conn.error
            if conn.done:
                raise StopAsyncIteration
            await conn.more(self._read_timeout_s)


class Http1Response:
    """A response whose head is in; its body read by `iter_any` or `read`. An async
    context manager: leaving it gives the connection back (body read whole) or closes it."""

    def __init__(self, pool: Http1Pool, conn: _Connection, read_timeout_s: float | None) -> None:
        self._pool = pool
        self._conn = conn
        self._read_timeout_s = read_timeout_s
        self.status = conn.status
        self.headers = conn.headers
        self._released = False

    def iter_any(self) -> BodyPieces:
        """The body as it arrives, each item what came since the last one."""
        return BodyPieces(self._conn, self._read_timeout_s)

    async def read(self, limit: int = 1 << 24) -> bytes:
        """The whole body (at most `limit` bytes kept; the rest read and dropped)."""
        parts: list[bytes] = []
        size = 0
        async for piece in self.iter_any():
            if size < limit:
                parts.append(piece[: limit - size])
            size += len(piece)
        return b"".join(parts)

    async def text(self) -> str:
        return (await self.read()).decode("utf-8", "replace")

    def release(self) -> None:
        """Give the connection back if its response was read whole, else close it."""
        if self._released:
            return
        self._released = True
        conn = self._conn
        if conn.done and conn.keep_alive and conn.error is None and not conn.closed:
            self._pool.put_back(conn)
        elif conn.transport is not None:
            conn.transport.close()

    async def __aenter__(self) -> Http1Response:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class Http1Pool:
    """Keep-alive connections to the origin of `base_url` (http or https), for `post`."""

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout_s: float | None = None,
        keepalive_s: float = 60.0,
        max_idle: int = 64,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        default_port = self.port == (443 if parts.scheme == "https" else 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self._host_header = host if default_port else f"{host}:{self.port}"
        self.path_prefix = parts.path.rstrip("/")
        https = parts.scheme == "https"
        self._ssl = (ssl_context or ssl.create_default_context()) if https else None
        self._connect_timeout_s = connect_timeout_s
        self._keepalive_s = keepalive_s
        self._max_idle = max_idle
        self._idle: list[_Connection] = []
        self._closed = False

    def request_bytes(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> bytes:
        lines = [f"{method} {self.path_prefix}{path} HTTP/1.1", f"Host: {self._host_header}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    async def post(
        self,
        path: str,
        body: bytes,
        headers: Mapping[str, str],
        read_timeout_s: float | None = None,
    ) -> Http1Response:
        """Send ``POST <base path><path>``; the response once its head is in."""
        return await self.request("POST", path, body, headers, read_timeout_s)

    async def request(
        self,
        method: str,
        path: str,
        body: bytes,
        headers: Mapping[str, str],
        read_timeout_s: float | None = None,
    ) -> Http1Response:
        wire = self.request_bytes(method, path, headers, body)
        conn, reused = self._pooled(), True
        if conn is None:
            conn, reused = await self._connect(), False
        while True:
            head = conn.expect()
            assert conn.transport is not None
            conn.transport.write(wire)
            try:
                await self._head_of(conn, head, read_timeout_s)
            except ConnectionResetError as exc:
                if reused and not conn.got_bytes:  # closed by the server while pooled
                    conn, reused = await self._connect(), False
                    continue
                raise HttpUnreachable(str(exc)) from exc
            except BaseException:
                if conn.transport is not None:
                    conn.transport.close()
                raise
            return Http1Response(self, conn, read_timeout_s)

    async def _head_of(
        self, conn: _Connection, head: asyncio.Future[None], timeout_s: float | None
    ) -> None:
        if timeout_s is None:
            await head
            return
        timer = asyncio.get_running_loop().call_later(timeout_s, _expire, head)
        try:
            await head
        finally:
            timer.cancel()

    def _pooled(self) -> _Connection | None:
        now = time.monotonic()
        idle = self._idle
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < self._keepalive_s:
                return conn
            if conn.transport is not None:
                conn.transport.close()
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(loop),
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self.host if self._ssl is not None else None,
                ),
                self._connect_timeout_s,
            )
        except TimeoutError:
            raise  # no connection within the connect timeout: "timed out", as aiohttp says
        except OSError as exc:
            raise HttpUnreachable(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        return conn

    def put_back(self, conn: _Connection) -> None:
        if self._closed or len(self._idle) >= self._max_idle:
            if conn.transport is not None:
                conn.transport.close()
            return
        conn.idle_since = time.monotonic()
        conn._head = None
        self._idle.append(conn)

    async def close(self) -> None:
        self._closed = True
        for conn in self._idle:
            if conn.transport is not None:
                conn.transport.close()
        self._idle.clear()
