"""Talking to an OpenAI-compatible upstream: its model list, and what its failures mean.

The engine and discovery both list ``GET <base_url>/models`` through
`list_models`, and every failure of a call (HTTP status, unreachable, a body
that is not what was asked for) becomes the modelyard error named here:

=====================  =====================  ===================  =======================
HTTP status            modelyard error        gRPC code            reason
=====================  =====================  ===================  =======================
429                    RateLimited            RESOURCE_EXHAUSTED   RATE_LIMITED
401                    ProviderAuthFailed     UNAUTHENTICATED      PROVIDER_AUTH_FAILED
403                    ProviderAccessDenied   PERMISSION_DENIED    PROVIDER_ACCESS_DENIED
402 (out of credits)   ProviderAccessDenied   PERMISSION_DENIED    PROVIDER_ACCESS_DENIED
404, model named       ModelNotFound          NOT_FOUND            MODEL_NOT_FOUND
400, 413, 422 with     ContextLengthExceeded  INVALID_ARGUMENT     CONTEXT_LENGTH_EXCEEDED
 a context code
400, 422 with a        ContentRejected        INVALID_ARGUMENT     CONTENT_REJECTED
 content-policy code,
 OpenRouter's 403
 moderation
400, 422               InvalidRequest         INVALID_ARGUMENT     INVALID_REQUEST
408, 500-599 (529)     BackendUnavailable     UNAVAILABLE          BACKEND_UNAVAILABLE
any other              ProviderError          UNKNOWN              PROVIDER_ERROR
refused, reset, timed  BackendUnavailable     UNAVAILABLE          BACKEND_UNAVAILABLE
 out before an answer
=====================  =====================  ===================  =======================

The error body is OpenAI's (error codes guide,
https://platform.openai.com/docs/guides/error-codes, and the API reference's
error object): ``{"error": {"message", "type", "param", "code"}}``. Its
``code`` ``context_length_exceeded`` (type ``invalid_request_error``) is a
prompt too long for the model, ``content_policy_violation`` (and Azure
OpenAI's ``content_filter``) a content-policy refusal; both keep the code as
`ProviderRefusal.provider_code`. Anthropic's body
(https://docs.anthropic.com/en/api/errors) is ``{"type": "error", "error":
{"type", "message"}}``; its 529 ``overloaded_error`` is an overloaded upstream,
as a 503 is.

Mistral's body (https://docs.mistral.ai/api/, its error responses) is flat:
``{"object": "error", "message", "type", "param", "code"}``, and a request its
validation refuses (a field it does not know, a value of the wrong type) is a
422 whose ``message`` is pydantic's ``{"detail": [{"type", "loc", "msg",
"input"}]}``: each problem is shown as ``body.stream_options: Extra inputs are
not permitted``. OpenRouter's (https://openrouter.ai/docs/api-reference/errors)
is ``{"error": {"code": <the HTTP status, a number>, "message", "metadata"}}``:
402 the account is out of credits (`ProviderAccessDenied`, as Cohere's 402: this
gateway's key, and another provider's model may serve); 403 with
``metadata.reasons`` its moderation flagged the input (`ContentRejected`, code
``moderation``); 408 the request timed out and 502 the model's provider is down
or answered nonsense (`BackendUnavailable`, retried), 503 no provider meets the
routing; a ``metadata.raw`` (the model's provider's own error) and its
``provider_name`` are kept in the message. The gateway's retry rules
(`modelyard.gateway.retries`) act on these classes.

What the upstream said is kept in the error's message, scrubbed of
credentials and cut at 512 bytes first (`modelyard_client.scrub.upstream_text`): an
upstream that echoes the request's ``Authorization`` header shows the caller
``Bearer [REDACTED]``, never the provider key.

A 401 or 403 is about the provider's API key in the gateway's configuration,
never the caller's credentials, and the message says so. A ``retry-after-ms``
header (OpenAI's, in milliseconds) or else a ``Retry-After`` (seconds, or an
HTTP date: RFC 9110, section 10.2.3) on a 429 or a 5xx becomes the error's
retry delay, sent as ``RetryInfo``; a 429 without one waits 1 s. What goes
wrong inside a stream is `chat_stream`'s.
"""

from __future__ import annotations

import datetime
import email.utils
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from modelyard.backends.openai_compat.providers import ProviderEndpoint
from modelyard_client.errors import (
    BackendUnavailable,
    ContentRejected,
    ContextLengthExceeded,
    InvalidRequest,
    ModelNotFound,
    ProviderAccessDenied,
    ProviderAuthFailed,
    ProviderError,
    ProviderRefusal,
    RateLimited,
)
from modelyard_client.scrub import scrub, upstream_text

# A 429 that does not say when to come back.
DEFAULT_RATE_LIMIT_RETRY_S = 1.0
# Provider error codes (the body's ``error.code``) that refuse the input itself.
CONTEXT_LENGTH_CODES = frozenset({"context_length_exceeded"})
# OpenRouter's moderation refusal (a 403 with ``metadata.reasons``) is given this code.
MODERATION_CODE = "moderation"
CONTENT_POLICY_CODES = frozenset({"content_policy_violation", "content_filter", MODERATION_CODE})


@dataclass(frozen=True)
class ModelList:
    """What ``GET /models`` listed, in the upstream's order."""

    models: tuple[dict[str, Any], ...]  # the items with a model id (``item["id"]``, a str)
    unnamed: tuple[int, ...] = ()  # indices in ``data`` of items without one


async def list_models(
    http: aiohttp.ClientSession, provider: ProviderEndpoint, client_timeout: aiohttp.ClientTimeout
) -> ModelList:
    """The upstream's model list, asked with the provider's headers as they are now."""
    url = f"{provider.base_url}/models"
    try:
        async with http.get(url, timeout=client_timeout, headers=provider.headers()) as resp:
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


class HttpAnswer(Protocol):
    """What `raise_for_status` reads of a response: aiohttp's or `backends.http1`'s."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    async def text(self) -> str: ...


async def raise_for_status(provider: ProviderEndpoint, resp: HttpAnswer, *, model: str) -> None:
    """Raise the error an HTTP failure means, with the upstream's own message in it,
    scrubbed of credentials and capped (`modelyard_client.scrub.upstream_text`): an upstream
    that echoes the request's ``Authorization`` header leaks no key."""
    text = (await resp.text())[:8192]
    detail, code = error_detail(text)
    detail = upstream_text(detail)
    where = f"upstream '{provider.name}'"
    if resp.status == 429:
        raise RateLimited(
            f"{where} rate-limited the request: {detail}",
            retry_after_s(resp.headers) or DEFAULT_RATE_LIMIT_RETRY_S,
        )
    if resp.status == 404 and model:
        raise ModelNotFound(model, f"{where} ({detail})")
    if resp.status in (400, 413, 422) or (resp.status == 403 and code == MODERATION_CODE):
        refusal = refusal_for(code, f"{where} rejected the request: {detail}")
        if refusal is not None:
            raise refusal
    if resp.status == 402:
        raise ProviderAccessDenied(
            f"{where} refused the request: the account of this gateway's API key for the "
            f"provider is out of credits (HTTP 402; not the caller's): {detail}"
        )
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
    if resp.status >= 500 or resp.status == 408:
        raise BackendUnavailable(
            f"{where} answered HTTP {resp.status}: {detail}", retry_after_s(resp.headers)
        )
    raise ProviderError(f"{where} answered HTTP {resp.status}: {detail}")


def error_detail(text: str) -> tuple[str, str]:
    """The message and the provider's code of an error body (OpenAI's, Anthropic's,
    Mistral's or OpenRouter's shape: see the module doc); the text itself and no code
    when it is none of them. Raw: `upstream_text` makes it fit for an error."""
    try:
        body = json.loads(text)
    except ValueError:
        return text, ""
    if not isinstance(body, dict):
        return text, ""
    if "error" not in body and ("message" in body or "detail" in body):  # Mistral's
        code = body.get("code")
        return _mistral_message(body.get("message", body)), code if isinstance(code, str) else ""
    error = body.get("error", text)
    if not isinstance(error, dict):
        return str(error), ""
    code = error.get("code")
    message = str(error.get("message", error))
    metadata = error.get("metadata")
    if isinstance(metadata, dict):  # OpenRouter's: what the model's provider said
        if metadata.get("reasons"):
            return f"{message} (flagged: {metadata['reasons']})", MODERATION_CODE
        if metadata.get("raw"):
            who = metadata.get("provider_name") or "the model's provider"
            message = f"{message} ({who} said: {metadata['raw']})"
    return message, code if isinstance(code, str) else ""


def _mistral_message(message: Any) -> str:
    """Mistral's ``message``: a text, or its request validation's ``{"detail": [{"loc",
    "msg"}]}`` (pydantic's), each problem as ``body.top_k: Extra inputs are not permitted``."""
    if isinstance(message, str) and message.startswith("{"):  # the detail as JSON text
        try:
            message = json.loads(message)
        except ValueError:
            return str(message)
    detail = message.get("detail") if isinstance(message, dict) else None
    if not isinstance(detail, list):
        return str(message)
    problems = []
    for item in detail:
        if isinstance(item, dict) and isinstance(item.get("loc"), list):
            where = ".".join(str(part) for part in item["loc"])
            problems.append(f"{where}: {item.get('msg', '')}")
        else:
            problems.append(str(item))
    return "; ".join(problems)


def refusal_for(code: str, message: str) -> ProviderRefusal | None:
    """The refusal a provider's error code means, or None for a code that is no refusal."""
    if code in CONTEXT_LENGTH_CODES:
        return ContextLengthExceeded(message, provider_code=code)
    if code in CONTENT_POLICY_CODES:
        return ContentRejected(message, provider_code=code)
    return None


def retry_after_s(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """The wait a ``retry-after-ms`` or ``Retry-After`` header asks for, in seconds; None
    without a usable one.

    ``retry-after-ms`` (OpenAI's, milliseconds) wins when usable. ``Retry-After``
    is either delay-seconds (``120``; a fraction is taken too) or an HTTP date,
    counted from the response's own ``Date`` when it has one, so that a clock
    difference between the upstream and this host does not count, else from
    `now` (default: this host's clock). A date in the past is 0.
    """
    millis = _delay(headers.get("retry-after-ms") or headers.get("Retry-After-Ms") or "")
    if millis is not None:
        return millis / 1000
    value = headers.get("Retry-After", "").strip()
    if not value:
        return None
    seconds = _delay(value)
    if seconds is not None:
        return seconds
    retry_at = _http_date(value)
    if retry_at is None:
        return None
    sent = _http_date(headers.get("Date", ""))
    if sent is None:
        sent = time.time() if now is None else now
    return max(retry_at - sent, 0.0)


def _delay(value: str) -> float | None:
    """A non-negative finite number, or None."""
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


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
        f"upstream '{provider.name}' at {scrub(provider.base_url)} is unreachable: {describe(exc)}"
    )


def describe(exc: BaseException) -> str:
    """A transport failure in a few words (scrubbed: it may quote a URL or a header)."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    return upstream_text(str(exc)) or type(exc).__name__
