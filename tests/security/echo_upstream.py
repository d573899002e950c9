"""An OpenAI-compatible upstream that echoes the request's headers in its errors.

The worst honest upstream for secrets: every error body quotes every header it
received (``Authorization: Bearer <provider key>`` among them) as JSON, and
once more base64-encoded, as some debugging proxies do. What a chat call gets
is chosen by the model it names, so one stack reaches every failure:

- ``status-<code>`` (400, 401, 403, 404, 429, 500...): that HTTP status with an
  OpenAI error body echoing the headers;
- ``text-500``: a 500 whose body is plain text (no JSON) echoing the headers;
- ``event-error``: a 200 stream whose first event is an ``error`` echoing them;
- ``malformed``: a 200 stream whose first event is not JSON and quotes them;
- ``cut``: two pieces, then the connection dropped;
- ``hang``: a 200 with no event ever (the first-token deadline's to end);
- anything else: a three-piece answer.

`accepted_keys`, when not empty, are the only Bearer keys it serves: any other
key gets a 401 (echoing the headers) on every endpoint, the model list too.
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

ECHO_MODELS = (
    "status-400",
    "status-401",
    "status-403",
    "status-404",
    "status-429",
    "status-500",
    "status-503",
    "text-500",
    "event-error",
    "malformed",
    "cut",
    "hang",
    "ok",
)


def _sse(data: Any) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data)
    return f"data: {text}\n\n".encode()


def _chunk(content: str | None = None, finish_reason: str | None = None) -> dict[str, Any]:
    delta = {"content": content} if content is not None else {}
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}


@dataclass
class EchoUpstream:
    accepted_keys: set[str] = field(default_factory=set)
    keys_seen: list[str] = field(default_factory=list)  # the Bearer key of every request
    url: str = ""
    _runner: web.AppRunner | None = None

    @staticmethod
    def echo(request: web.Request) -> str:
        """What every error says: the headers as JSON, then as base64."""
        headers = dict(request.headers)
        encoded = base64.b64encode(json.dumps(headers).encode()).decode()
        auth = request.headers.get("Authorization", "")
        return (
            f"request headers: {json.dumps(headers)}; base64: {encoded}; "
            f"auth base64: {base64.b64encode(auth.encode()).decode()}"
        )

    def _error(self, request: web.Request, status: int) -> web.Response:
        body = {
            "error": {
                "message": f"rejected: {self.echo(request)}",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        }
        headers = {"Retry-After": "0"} if status in (429, 503) else None
        return web.json_response(body, status=status, headers=headers)

    def _refused(self, request: web.Request) -> web.Response | None:
        auth = request.headers.get("Authorization", "")
        key = auth.removeprefix("Bearer ")
        self.keys_seen.append(key)
        if self.accepted_keys and key not in self.accepted_keys:
            return self._error(request, 401)
        return None

    async def _models(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        return web.json_response(
            {"object": "list", "data": [{"id": m, "object": "model"} for m in ECHO_MODELS]}
        )

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        refused = self._refused(request)
        if refused is not None:
            return refused
        model = (await request.json())["model"]
        if model.startswith("status-"):
            return self._error(request, int(model.removeprefix("status-")))
        if model == "text-500":
            return web.Response(status=500, text=f"internal error; {self.echo(request)}")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        if model == "event-error":
            await resp.write(_sse({"error": {"message": self.echo(request), "type": "x"}}))
        elif model == "malformed":
            await resp.write(_sse(f"not json {self.echo(request)}"))
        elif model == "cut":
            await resp.write(_sse(_chunk("one ")) + _sse(_chunk("two ")))
            await asyncio.sleep(0.2)
            assert request.transport is not None
            request.transport.close()
            return resp
        elif model == "hang":
            await asyncio.get_running_loop().create_future()  # cancelled when the client goes
        else:
            for piece in ("a ", "b ", "c"):
                await resp.write(_sse(_chunk(piece)))
            await resp.write(_sse(_chunk(finish_reason="stop")) + _sse("[DONE]"))
        await resp.write_eof()
        return resp

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, handler_cancellation=True)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
