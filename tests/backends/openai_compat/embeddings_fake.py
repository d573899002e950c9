"""A fake OpenAI embeddings upstream: ``GET /v1/models`` and ``POST /v1/embeddings``.

It follows OpenAI's API reference, "Create embeddings"
(https://developers.openai.com/api/reference/resources/embeddings, read
2026-12-02): a body with ``model``, ``input`` (a string or an array of
strings, none empty, at most 2,048), ``dimensions`` (text-embedding-3 and
later only), ``encoding_format``; the answer ``{"object": "list", "data":
[{"object": "embedding", "index", "embedding"}], "model", "usage":
{"prompt_tokens", "total_tokens"}}``. Its failures are OpenAI's error body
``{"error": {"message", "type", "param", "code"}}`` (the error codes guide,
https://platform.openai.com/docs/guides/error-codes): 404 ``model_not_found``
for an unknown model, 400 for an empty input, and OpenAI's own 400 for
``dimensions`` on a model that has no such parameter ("This model does not
support specifying dimensions.", as text-embedding-ada-002 answers, quoted in
sbintuitions/JMTEB#14). A test scripts failures (`fail`: a status, a body,
headers such as ``Retry-After``, for the next N requests), the order of the
answer's items (`shuffled`), and llama.cpp's answer for a model without
pooling (`per_token`: one vector per token, a list of lists, as
``llama_cpp.server --embedding true`` answers for Gemma 3 270M, seen here).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

# Models that take `dimensions` (the reference: text-embedding-3 and later).
SHORTENABLE = ("text-embedding-3-small", "text-embedding-3-large")
LENGTH = 8  # the length of every vector the fake makes, unless `dimensions` is asked


def vector_of(text: str, length: int = LENGTH) -> list[float]:
    """The fake's vector of `text`: the same text, the same vector."""
    digest = hashlib.sha256(text.encode()).digest()
    return [round(b / 255 - 0.5, 6) for b in (digest * (length // 32 + 1))[:length]]


def tokens_of(text: str) -> int:
    """The fake's token count of one input: one per word."""
    return len(text.split())


def openai_error(message: str, type_: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


@dataclass
class FakeEmbeddings:
    models: list[str] = field(default_factory=lambda: ["text-embedding-3-small", "gpt-4o-mini"])
    bodies: list[dict[str, Any]] = field(default_factory=list)  # embeddings requests received
    headers: list[dict[str, str]] = field(default_factory=list)
    shuffled: bool = False  # answer the items last input first (their `index` says which)
    per_token: bool = False  # answer one vector per token of each input
    url: str = ""  # base URL without /v1
    _failures: list[tuple[int, dict[str, Any], dict[str, str]]] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    def fail(
        self,
        status: int,
        body: dict[str, Any],
        headers: dict[str, str] | None = None,
        *,
        times: int = 1,
    ) -> None:
        """Answer the next `times` embeddings requests with this status, body and headers."""
        self._failures.extend([(status, body, headers or {})] * times)

    async def _models(self, request: web.Request) -> web.Response:
        listed = [
            {"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "fake"}
            for m in self.models
        ]
        return web.json_response({"object": "list", "data": listed})

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.bodies.append(body)
        self.headers.append(dict(request.headers))
        if self._failures:
            status, answer, headers = self._failures.pop(0)
            return web.json_response(answer, status=status, headers=headers)
        model = body.get("model")
        if model not in self.models:
            return web.json_response(
                openai_error(
                    f"The model `{model}` does not exist or you do not have access to it.",
                    "invalid_request_error",
                    "model_not_found",
                ),
                status=404,
            )
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(texts, list) or not texts or not all(texts):
            return web.json_response(
                openai_error("'$.input' is invalid.", "invalid_request_error"), status=400
            )
        length = LENGTH
        if "dimensions" in body:
            if model not in SHORTENABLE:
                return web.json_response(
                    openai_error(
                        "This model does not support specifying dimensions.",
                        "invalid_request_error",
                    ),
                    status=400,
                )
            length = int(body["dimensions"])
        items = []
        for i, text in enumerate(texts):
            vector: Any = vector_of(text, length)
            if self.per_token:
                vector = [vector_of(word, length) for word in text.split()]
            items.append({"object": "embedding", "index": i, "embedding": vector})
        if self.shuffled:
            items.reverse()
        used = sum(tokens_of(t) for t in texts)
        return web.json_response(
            {
                "object": "list",
                "data": items,
                "model": model,
                "usage": {"prompt_tokens": used, "total_tokens": used},
            }
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/embeddings", self._embeddings)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
