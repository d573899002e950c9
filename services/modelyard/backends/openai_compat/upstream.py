"""Talking to an OpenAI-compatible upstream: its model list, and what its failures mean.

The engine and discovery both list ``GET <base_url>/models`` through
`list_models`, and every failure of a call (HTTP status, unreachable, a body
that is not what was asked for) becomes the modelyard error named here:

==================  ====================  ===================  ======================
HTTP status         modelyard error       gRPC code            reason
==================  ====================  ===================  ======================
429                 RateLimited           RESOURCE_EXHAUSTED   RATE_LIMITED
401                 ProviderAuthFailed    UNAUTHENTICATED      PROVIDER_AUTH_FAILED
403                 ProviderAccessDenied  PERMISSION_DENIED    PROVIDER_ACCESS_DENIED
404, model named    ModelNotFound         NOT_FOUND            MODEL_NOT_FOUND
400, 422            InvalidRequest        INVALID_ARGUMENT     INVALID_REQUEST
500-599             BackendUnavailable    UNAVAILABLE          BACKEND_UNAVAILABLE
any other           ProviderError         UNKNOWN              PROVIDER_ERROR
==================  ====================  ===================  ======================

A 401 or 403 is about the provider's API key in the gateway's configuration,
never the caller's credentials, and the message says so. A ``Retry-After``
header (seconds, or an HTTP date: RFC 9110, section 10.2.3) on a 429 or a 5xx
becomes the error's retry delay, sent as ``RetryInfo``; a 429 without one
waits 1 s. What goes wrong inside a stream is `chat_stream`'s.
"""

from __future__ import annotations

import datetime
import email.utils
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from modelyard.backends.openai_compat.providers import ProviderEndpoint
from modelyard.errors import (
    BackendUnavailable,
    InvalidRequest,
    ModelNotFound,
    ProviderAccessDenied,
    ProviderAuthFailed,
    ProviderError,
    RateLimited,
)

# A 429 that does not say when to come back.
DEFAULT_RATE_LIMIT_RETRY_S = 1.0


@dataclass(frozen=True)
class ModelList:
    """What ``GET /models`` listed, in the upstream's order."""

    models: tuple[dict[str, Any], ...]  # the items with a model id (``item["id"]``, a str)
    unnamed: tuple[int, ...] = ()  # indices in ``data`` of items without one


async def list_models(
    http: aiohttp.ClientSession, provider: ProviderEndpoint, client_timeout: aiohttp.ClientTimeout
) -> ModelList:
    """The upstream's model list; `http` sends the provider's headers (`headers()`)."""
    url = f"{provider.base_url}/models"
    try:
        async with http.get(url, timeout=client_timeout) as resp:
            if resp.status != 200:
                await raise_for_status(provider, resp, model="")
            try:
                body = await resp.json(content_type=None)
            except ValueError as exc:
                raise ProviderError(f"upstream '{provider.name}' answered no JSON") from exc
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise unreachable(provider, exc) from exc
    listed = body.get("data") if isinstance(body, dict) else None
    if not isinstance(listed, list):
        raise ProviderError(f"upstream '{provider.name}' did not answer a model list")
    models, unnamed = [], []
    for i, item in enumerate(listed):
        if isinstance(item, dict) and isinstance(item.get("id"), str) and item["id"]:
            models.append(item)
        else:
            unnamed.append(i)
    return ModelList(tuple(models), tuple(unnamed))


async def raise_for_status(
    provider: ProviderEndpoint, resp: aiohttp.ClientResponse, *, model: str
) -> None:
    """Raise the error an HTTP failure means, with the upstream's own message in it."""
    text = (await resp.text())[:500]
    try:
        detail = json.loads(text).get("error", text)
        if isinstance(detail, dict):
            detail = detail.get("message", detail)
    except (ValueError, AttributeError):
        detail = text
    where = f"upstream '{provider.name}'"
    if resp.status == 429:
        raise RateLimited(
            f"{where} rate-limited the request: {detail}",
            retry_after_s(resp.headers) or DEFAULT_RATE_LIMIT_RETRY_S,
        )
    if resp.status == 404 and model:
        raise ModelNotFound(model, f"{where} ({detail})")
    if resp.status == 401:
        raise ProviderAuthFailed(
            f"{where} rejected this gateway's API key for the provider "
            f"(HTTP 401; not the caller's credentials): {detail}"
        )
    if resp.status == 403:
        raise ProviderAccessDenied(
            f"{where} denied this gateway's API key for the provider "
            f"(HTTP 403; not the caller's credentials): {detail}"
        )
    if resp.status in (400, 422):
        raise InvalidRequest(f"{where} rejected the request: {detail}")
    if resp.status >= 500:
        raise BackendUnavailable(
            f"{where} answered HTTP {resp.status}: {detail}", retry_after_s(resp.headers)
        )
    raise ProviderError(f"{where} answered HTTP {resp.status}: {detail}")


def retry_after_s(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """The wait a ``Retry-After`` header asks for, in seconds; None without a usable one.

    Either delay-seconds (``120``; a fraction is taken too) or an HTTP date,
    counted from the response's own ``Date`` when it has one, so that a clock
    difference between the upstream and this host does not count, else from
    `now` (default: this host's clock). A date in the past is 0.
    """
    value = headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        retry_at = _http_date(value)
        if retry_at is None:
            return None
        sent = _http_date(headers.get("Date", ""))
        if sent is None:
            sent = time.time() if now is None else now
        return max(retry_at - sent, 0.0)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _http_date(text: str) -> float | None:
    """An HTTP date (``Wed, 21 Oct 2015 07:28:00 GMT``) as a POSIX timestamp, or None."""
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": UTC, says RFC 5322; HTTP dates are all GMT
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()


def unreachable(provider: ProviderEndpoint, exc: BaseException) -> BackendUnavailable:
    """The error for a call that never got an answer (refused, reset, timed out)."""
    return BackendUnavailable(
        f"upstream '{provider.name}' at {provider.base_url} is unreachable: {describe(exc)}"
    )


def describe(exc: BaseException) -> str:
    """A transport failure in a few words."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
