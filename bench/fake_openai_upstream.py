"""A fast fake OpenAI-compatible upstream for the gateway-overhead benchmark.

Serves ``GET /v1/models`` and ``POST /v1/chat/completions`` (SSE streaming in the
exact OpenAI chunk format, or one JSON answer) on 127.0.0.1. It runs in its own
process (`UpstreamProcess`) so it never shares the measured process's event loop.

Two implementations: ``raw`` (default), a bare asyncio protocol that answers from
prebuilt bytes, and ``aiohttp`` (aiohttp.web). The raw one costs about a fifth of
the CPU per streamed answer (~0.07 ms against ~0.36 ms measured here), which
matters on a 2-core machine where the upstream, the gateway and the load
generator all compete for CPU.

Run alone: ``python bench/fake_openai_upstream.py --port 8000 [--impl aiohttp]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from functools import lru_cache

MODEL = "fake-gpt"
PIECES = ("Hello", " from", " the", " fake", " upstream", ".")
CREATED = int(time.time())


def _event(obj: object) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def _chunk(model: str, delta: dict[str, str], finish: str | None) -> dict[str, object]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _usage() -> dict[str, int]:
    return {"prompt_tokens": 8, "completion_tokens": len(PIECES), "total_tokens": 8 + len(PIECES)}


@lru_cache(maxsize=64)
def stream_events(model: str, include_usage: bool) -> tuple[bytes, ...]:
    """The SSE events of one streamed answer, ``data: [DONE]`` last."""
    events = [_event(_chunk(model, {"role": "assistant", "content": ""}, None))]
    events += [_event(_chunk(model, {"content": p}, None)) for p in PIECES]
    events.append(_event(_chunk(model, {}, "stop")))
    if include_usage:
        events.append(
            _event(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion.chunk",
                    "created": CREATED,
                    "model": model,
                    "choices": [],
                    "usage": _usage(),
                }
            )
        )
    events.append(b"data: [DONE]\n\n")
    return tuple(events)


@lru_cache(maxsize=64)
def completion_body(model: str) -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": CREATED,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "".join(PIECES)},
                }
            ],
            "usage": _usage(),
        }
    ).encode()


MODELS_BODY = json.dumps(
    {
        "object": "list",
        "data": [{"id": MODEL, "object": "model", "created": CREATED, "owned_by": "bench"}],
    }
).encode()


def answer(method: str, path: str, body: bytes) -> tuple[int, str, list[bytes] | bytes]:
    """(status, content type, body); a list body is streamed as SSE events."""
    path = path.split("?", 1)[0].rstrip("/")
    if method == "GET" and path == "/v1/models":
        return 200, "application/json", MODELS_BODY
    if method == "POST" and path == "/v1/chat/completions":
        try:
            req = json.loads(body)
            model = str(req["model"])
        except (ValueError, KeyError, TypeError):
            return 400, "application/json", b'{"error":{"message":"bad request"}}'
        if req.get("stream"):
            usage = bool((req.get("stream_options") or {}).get("include_usage"))
            return 200, "text/event-stream", list(stream_events(model, usage))
        return 200, "application/json", completion_body(model)
    return 404, "application/json", b'{"error":{"message":"not found"}}'


class RawHTTP(asyncio.Protocol):
    """Just enough HTTP/1.1 for keep-alive clients: Content-Length bodies, no pipelining."""

    def __init__(self) -> None:
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # a TCP server's: it can write
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].decode("latin-1").split("\r\n")
            length = 0
            for line in head[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buf) < end + 4 + length:
                return
            body = self.buf[end + 4 : end + 4 + length]
            self.buf = self.buf[end + 4 + length :]
            method, path, _ = head[0].split(" ", 2)
            self._respond(*answer(method, path, body))

    def _respond(self, status: int, ctype: str, body: list[bytes] | bytes) -> None:
        assert self.transport is not None
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}[status]
        head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
        if isinstance(body, list):  # SSE: chunked, one chunk per event, as real servers do
            parts = [f"{len(e):x}\r\n".encode() + e + b"\r\n" for e in body]
            out = (head + "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
            self.transport.write(out + b"".join(parts) + b"0\r\n\r\n")
        else:
            self.transport.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)


async def _serve_raw(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(RawHTTP, "127.0.0.1", port, backlog=1024)
    print(f"listening on 127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    await _until_signalled()
    server.close()


async def _serve_aiohttp(port: int) -> None:
    from aiohttp import web

    async def handle(request: web.Request) -> web.StreamResponse:
        status, ctype, body = answer(request.method, request.path, await request.read())
        if not isinstance(body, list):
            return web.Response(status=status, body=body, content_type=ctype)
        resp = web.StreamResponse(headers={"Content-Type": ctype, "Cache-Control": "no-cache"})
        await resp.prepare(request)
        for event in body:
            await resp.write(event)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    port = runner.addresses[0][1]  # the port the OS chose when asked for 0
    print(f"listening on 127.0.0.1:{port}", flush=True)
    await _until_signalled()
    await runner.cleanup()


async def _until_signalled() -> None:
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()


class UpstreamProcess:
    """The fake upstream in a child process; `url` is its base (without /v1)."""

    def __init__(self, impl: str = "raw") -> None:
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--port", "0", "--impl", impl],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"fake upstream did not start: {line!r}")
        self.url = "http://" + line.split()[-1]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # by its own pid
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> UpstreamProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--impl", choices=("raw", "aiohttp"), default="raw")
    args = parser.parse_args()
    asyncio.run(_serve_raw(args.port) if args.impl == "raw" else _serve_aiohttp(args.port))


if __name__ == "__main__":
    main()
