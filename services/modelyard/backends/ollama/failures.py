"""What an Ollama daemon's failures mean, as classes of the one error hierarchy.

Ollama answers a failed call with ``{"error": "<message>"}`` and an HTTP
status (https://docs.ollama.com/api/errors, read 2026-12-01; docs/api.md of
ollama/ollama): 400 a bad request, 404 a model that is not pulled, 429 a rate
limit (ollama.com and proxies in front of a daemon), 500 an internal failure,
502 a cloud model out of reach, 503 a daemon whose queue is full
(``OLLAMA_MAX_QUEUE``). Once a stream has started its status cannot change, so
a failure then is one NDJSON line ``{"error": "..."}``.

=========================  =====================  ===================================
Ollama says                modelyard error        note
=========================  =====================  ===================================
404                        ModelNotFound          the model is not pulled
400, "context length"      ContextLengthExceeded  (chat truncates to num_ctx itself)
400 (any other)            InvalidRequest
401 / 403                  ProviderAuthFailed /   the gateway's credentials for the
                           ProviderAccessDenied   daemon, not the caller's
429                        RateLimited            Retry-After, else 1 s
500-599                    BackendUnavailable     Retry-After when sent
any other status           ProviderError
{"error"} mid-stream       ProviderError
refused, reset, timed out  BackendUnavailable     before any text (`unreachable`)
cut after some text        StreamTruncated        `engine`; no done line: `answer`
a line that is no answer   ProviderProtocolError  not JSON, or fields of the wrong type
=========================  =====================  ===================================

The official client raises `ollama.ResponseError` (the ``error`` text and the
status) and drops the response headers, so the engine's HTTP client maps a
failed status in a response hook instead (`raise_for_status`), where
``Retry-After`` is still there; `from_response_error` maps what the client
raises itself, with the same table (`http_failure`). Upstream text is
scrubbed and capped (`modelyard_client.scrub.upstream_text`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping

import httpx
import ollama
import pydantic

from modelyard.backends.openai_compat.upstream import (
    DEFAULT_RATE_LIMIT_RETRY_S,
    describe,
    retry_after_s,
)
from modelyard.catalog_ids import catalog_id
from modelyard_client.errors import (
    BackendUnavailable,
    ContextLengthExceeded,
    InvalidRequest,
    ModelNotFound,
    ModelyardError,
    ProviderAccessDenied,
    ProviderAuthFailed,
    ProviderError,
    ProviderProtocolError,
    RateLimited,
)
from modelyard_client.scrub import scrub, upstream_text

# The daemon never answered: refused (the client's own ConnectionError), reset, timed out.
TRANSPORT_ERRORS = (ConnectionError, httpx.TransportError)
# An answer line the documented format does not allow.
MALFORMED_ANSWERS = (pydantic.ValidationError, json.JSONDecodeError)


def http_failure(
    status: int, text: str, headers: Mapping[str, str], *, where: str, model_id: str
) -> ModelyardError:
    """The error an HTTP failure of the daemon means (`where`: ``ollama 'NAME'``)."""
    detail = upstream_text(error_text(text))
    if status == 429:
        return RateLimited(
            f"{where} rate-limited the request: {detail}",
            retry_after_s(headers) or DEFAULT_RATE_LIMIT_RETRY_S,
        )
    if status == 404 and model_id:
        return ModelNotFound(model_id, f"{where} ({detail}; `ollama pull` it there)")
    if status == 401:
        return ProviderAuthFailed(
            f"{where} rejected this gateway's credentials for it "
            f"(HTTP 401; not the caller's credentials): {detail}"
        )
    if status == 403:
        return ProviderAccessDenied(
            f"{where} denied this gateway's credentials for it "
            f"(HTTP 403; not the caller's credentials): {detail}"
        )
    if status == 400 and "context length" in detail.lower():
        return ContextLengthExceeded(f"{where} rejected the request: {detail}")
    if status == 400:
        return InvalidRequest(f"{where} rejected the request: {detail}")
    if status >= 500:
        return BackendUnavailable(
            f"{where} answered HTTP {status}: {detail}", retry_after_s(headers)
        )
    return ProviderError(f"{where} answered HTTP {status}: {detail}")


def error_text(text: str) -> str:
    """The message of an ``{"error": "..."}`` body; the text itself when it is not one."""
    try:
        body = json.loads(text)
    except ValueError:
        return text
    if isinstance(body, dict) and "error" in body:
        return str(body["error"])
    return text


def from_response_error(exc: ollama.ResponseError, *, where: str, model_id: str) -> ModelyardError:
    """The error an `ollama.ResponseError` means; status -1 is an error line mid-stream."""
    if exc.status_code == -1:
        return ProviderError(f"{where} failed mid-stream: {upstream_text(str(exc.error))}")
    return http_failure(exc.status_code, str(exc.error), {}, where=where, model_id=model_id)


def unreachable(where: str, endpoint: str, exc: BaseException) -> BackendUnavailable:
    """The error for a call the daemon never answered (refused, reset, timed out)."""
    return BackendUnavailable(f"{where} at {scrub(endpoint)} is unreachable: {transport(exc)}")


def transport(exc: BaseException) -> str:
    """A transport failure in a few words (httpx's timeouts carry no text)."""
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return describe(exc)


def malformed(where: str, model_id: str, exc: BaseException) -> ProviderProtocolError:
    """The error for an answer line that is not what Ollama's reference documents."""
    if isinstance(exc, pydantic.ValidationError):
        problem = f"{exc.error_count()} field(s) of the wrong type"
    else:
        problem = "not JSON"
    return ProviderProtocolError(f"{where} sent a malformed answer for '{model_id}' ({problem})")


def raise_for_status(backend: str, where: str) -> Callable[[httpx.Response], Awaitable[None]]:
    """An httpx response hook raising the error a failed status means, headers at hand."""

    async def hook(response: httpx.Response) -> None:
        if response.is_success:
            return
        await response.aread()
        name = _model_of(response.request)
        raise http_failure(
            response.status_code,
            response.text[:8192],
            response.headers,
            where=where,
            model_id=catalog_id(backend, name) if name else "",
        )

    return hook


def _model_of(request: httpx.Request) -> str:
    """The model a request to the daemon named (``{"model": ...}``), or ""."""
    try:
        body = json.loads(request.content or b"{}")
    except ValueError:
        return ""
    model = body.get("model") if isinstance(body, dict) else None
    return model if isinstance(model, str) else ""
