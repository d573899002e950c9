"""Talking to Anthropic's API: its headers, its model list, and what its failures mean.

Every request carries the key in ``x-api-key`` (read on each call: a key
rotated by SIGHUP applies from the next one) and ``anthropic-version:
2023-06-01``. An error is answered as ``{"type": "error", "error": {"type",
"message"}}`` with the HTTP status of its type, per
https://docs.anthropic.com/en/api/errors; inside a stream the same error
object arrives as an ``error`` event after a 200, with no status, so the
error's ``type`` decides there (`STATUS_OF_TYPE`):

======  =====================  =====================  ==========================
status  error type             modelyard error        note
======  =====================  =====================  ==========================
400     invalid_request_error  InvalidRequest         ``prompt is too long``:
                                                      ContextLengthExceeded;
                                                      ``content filtering
                                                      policy``: ContentRejected
401     authentication_error   ProviderAuthFailed     the gateway's provider key
403     permission_error       ProviderAccessDenied   the gateway's provider key
404     not_found_error        ModelNotFound          on a call naming a model
413     request_too_large      InvalidRequest         over the API's byte limit
429     rate_limit_error       RateLimited            ``retry-after``, else 1 s
500     api_error              BackendUnavailable
529     overloaded_error       BackendUnavailable     ``retry-after`` when sent
other   other                  by status: 422 InvalidRequest, 5xx
                               BackendUnavailable, else ProviderError
======  =====================  =====================  ==========================

Both refusals keep the error type as `ProviderRefusal.provider_code`. What the
upstream said is kept in the message, scrubbed of credentials and capped
(`modelyard_client.scrub.upstream_text`). ``GET /v1/models`` is listed page by page
(``limit``, ``after_id``, ``has_more``: https://docs.anthropic.com/en/api/models-list).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from modelyard.backends.anthropic.request import API
from modelyard.backends.openai_compat.providers import ProviderEndpoint
from modelyard.backends.openai_compat.upstream import (
    DEFAULT_RATE_LIMIT_RETRY_S,
    retry_after_s,
    unreachable,
)
from modelyard_client.errors import (
    BackendUnavailable,
    ContentRejected,
    ContextLengthExceeded,
    InvalidRequest,
    ModelNotFound,
    ModelyardError,
    ProviderAccessDenied,
    ProviderAuthFailed,
    ProviderError,
    RateLimited,
)
from modelyard_client.scrub import upstream_text

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_BASE_URL = "https://api.anthropic.com"
# The HTTP status each documented error type comes with (https://docs.anthropic.com/en/api/errors).
STATUS_OF_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}
# How an invalid_request_error's message says the input itself is refused.
PROMPT_TOO_LONG = "prompt is too long"  # "prompt is too long: 208656 tokens > 200000 maximum"
CONTENT_FILTERED = "content filtering policy"  # "Output blocked by content filtering policy"
MODELS_PAGE = 1000  # the most the model list gives per page
MAX_MODEL_PAGES = 20


def request_headers(endpoint: ProviderEndpoint) -> dict[str, str]:
    """What a request sends now: the extra headers, the API version, the current key."""
    headers = {**endpoint.extra_headers, "anthropic-version": ANTHROPIC_VERSION}
    key = endpoint.key()
    if key:
        headers["x-api-key"] = key
    return headers


async def list_models(
    http: aiohttp.ClientSession, endpoint: ProviderEndpoint, client_timeout: aiohttp.ClientTimeout
) -> list[dict[str, Any]]:
    """Every model ``GET /v1/models`` lists (items with a string ``id``), newest first."""
    url = f"{endpoint.base_url}/models"
    listed: list[dict[str, Any]] = []
    query: dict[str, str] = {"limit": str(MODELS_PAGE)}
    for _ in range(MAX_MODEL_PAGES):
        try:
            async with http.get(
                url, params=query, timeout=client_timeout, headers=request_headers(endpoint)
            ) as resp:
                if resp.status != 200:
                    raise await error_of_response(endpoint, resp, model="")
                try:
                    page = await resp.json(content_type=None)
                except ValueError as exc:
                    raise ProviderError(f"upstream '{endpoint.name}' answered no JSON") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise unreachable(endpoint, exc) from exc
        data = page.get("data") if isinstance(page, dict) else None
        if not isinstance(data, list):
            raise ProviderError(f"upstream '{endpoint.name}' did not answer a model list")
        listed.extend(m for m in data if isinstance(m, dict) and isinstance(m.get("id"), str))
        last = page.get("last_id")
        if page.get("has_more") is not True or not isinstance(last, str) or not last:
            break
        query = {"limit": str(MODELS_PAGE), "after_id": last}
    return listed


async def error_of_response(
    endpoint: ProviderEndpoint, resp: aiohttp.ClientResponse, *, model: str
) -> ModelyardError:
    """The error an HTTP failure means (`model`: the catalog id a call named, if any)."""
    text = (await resp.text())[:8192]
    error_type, message = error_body(text)
    return error_for(
        f"upstream '{endpoint.name}'", resp.status, error_type, message, resp.headers, model
    )


def error_body(text: str) -> tuple[str, str]:
    """The ``error.type`` and ``error.message`` of an error body; no type and the text
    itself when it is not Anthropic's shape (a proxy's HTML page)."""
    try:
        body = json.loads(text)
    except ValueError:
        return "", text
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "", text
    error_type = error.get("type")
    return (error_type if isinstance(error_type, str) else ""), str(error.get("message", error))


def error_for(
    where: str,
    status: int | None,
    error_type: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    model: str = "",
) -> ModelyardError:
    """The modelyard error of an Anthropic error: by HTTP `status`, or for a stream's
    ``error`` event (`status` None) by the status its type comes with."""
    how = f"answered HTTP {status}" if status is not None else "failed mid-stream"
    if status is None:
        status = STATUS_OF_TYPE.get(error_type)
    headers = headers or {}
    detail = upstream_text(message)
    said = f" ({error_type}): {detail}" if error_type else f": {detail}"
    if status == 400 and PROMPT_TOO_LONG in message.lower():
        return ContextLengthExceeded(f"{where} refused the prompt{said}", error_type)
    if status == 400 and CONTENT_FILTERED in message.lower():
        return ContentRejected(f"{where} refused the request{said}", error_type)
    if status in (400, 422):
        return InvalidRequest(f"{where} rejected the request{said}")
    if status == 413:
        return InvalidRequest(f"{where} refused a request over {API}'s size limit{said}")
    if status == 401:
        return ProviderAuthFailed(
            f"{where} rejected this gateway's API key for the provider "
            f"(HTTP 401; not the caller's credentials){said}"
        )
    if status == 403:
        return ProviderAccessDenied(
            f"{where} denied this gateway's API key for the provider "
            f"(HTTP 403; not the caller's credentials){said}"
        )
    if status == 404 and model:
        return ModelNotFound(model, f"{where}{said}")
    if status == 429:
        return RateLimited(
            f"{where} rate-limited the request{said}",
            retry_after_s(headers) or DEFAULT_RATE_LIMIT_RETRY_S,
        )
    if status is not None and status >= 500:
        return BackendUnavailable(f"{where} {how}{said}", retry_after_s(headers))
    return ProviderError(f"{where} {how}{said}")
