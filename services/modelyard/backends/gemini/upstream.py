"""What a failure of the Gemini API or of Vertex AI means, as a modelyard error.

Both answer a failure with Google's error model over HTTP: the status, and a
body ``{"error": {"code": <HTTP status>, "message", "status": <canonical code>,
"details": [...]}}`` (https://ai.google.dev/gemini-api/docs/troubleshooting,
https://cloud.google.com/apis/design/errors). The same object can arrive as an
event inside a stream (`modelyard.backends.gemini.stream`); both go through
`error_for`:

====================================  ======================  ============================
HTTP status / ``error.status``        modelyard error         why
====================================  ======================  ============================
429 RESOURCE_EXHAUSTED                RateLimited             delay: ``Retry-After``, else
                                                              the body's ``RetryInfo``
                                                              ``retryDelay``, else 1 s
400 INVALID_ARGUMENT, ``ErrorInfo``   ProviderAuthFailed      the Gemini API answers a bad
 reason API_KEY_INVALID                                       key with a 400
400 INVALID_ARGUMENT, "input token    ContextLengthExceeded   the prompt is over the
 count ... exceeds the maximum"                               model's window
400 INVALID_ARGUMENT (other)          InvalidRequest
400 FAILED_PRECONDITION               ProviderAccessDenied    the provider account cannot
                                                              be used (billing, region)
401 UNAUTHENTICATED                   ProviderAuthFailed      the gateway's credential
403 PERMISSION_DENIED                 ProviderAccessDenied    the gateway's credential
404 NOT_FOUND                         ModelNotFound
500 INTERNAL, 503 UNAVAILABLE,        BackendUnavailable      with the delay when one is
 504 DEADLINE_EXCEEDED, other 5xx                             given
any other                             ProviderError
====================================  ======================  ============================

A 401 or 403 is about the credential the gateway holds for the provider (the
Gemini API key, or Vertex's service-account credentials), never the caller's,
and the message says which. The upstream's message is scrubbed of credentials
and capped (`modelyard_client.scrub.upstream_text`) before it goes into an error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from modelyard.backends.openai_compat.upstream import (
    DEFAULT_RATE_LIMIT_RETRY_S,
    describe,
    retry_after_s,
)
from modelyard_client.errors import (
    BackendUnavailable,
    ContextLengthExceeded,
    InvalidRequest,
    ModelNotFound,
    ModelyardError,
    ProviderAccessDenied,
    ProviderAuthFailed,
    ProviderError,
    RateLimited,
)
from modelyard_client.scrub import scrub, upstream_text

# "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576)."
_CONTEXT_TOO_LONG = re.compile(r"input token count.*exceeds the maximum", re.IGNORECASE)
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")  # google.protobuf.Duration in JSON: "22s"


@dataclass(frozen=True)
class Upstream:
    """Who answered, for the messages: the backend's name, where it is, and the credential
    the gateway sends it (``API key`` or ``service-account credentials``)."""

    name: str
    base_url: str
    credential: str

    @property
    def label(self) -> str:
        return f"upstream '{self.name}'"


@dataclass(frozen=True)
class GoogleError:
    """The parts of a Google error body the mapping reads."""

    message: str
    status: str = ""  # the canonical code's name: RESOURCE_EXHAUSTED, ...
    details: tuple[Mapping[str, Any], ...] = ()

    @classmethod
    def parse(cls, text: str) -> GoogleError:
        """The error in a body's text; the text itself as the message when it is no
        Google error body."""
        try:
            body = json.loads(text)
        except ValueError:
            return cls(text)
        error = body.get("error") if isinstance(body, dict) else None
        return cls.of(error) if isinstance(error, dict) else cls(text)

    @classmethod
    def of(cls, error: Mapping[str, Any]) -> GoogleError:
        """The error an ``error`` object holds."""
        status = error.get("status")
        details = error.get("details")
        return cls(
            str(error.get("message", error)),
            status if isinstance(status, str) else "",
            tuple(d for d in details if isinstance(d, dict)) if isinstance(details, list) else (),
        )

    def detail(self, type_url: str) -> Mapping[str, Any]:
        return next((d for d in self.details if d.get("@type") == type_url), {})

    def retry_delay_s(self) -> float | None:
        """The ``RetryInfo`` detail's ``retryDelay``, in seconds."""
        match = _DURATION.match(str(self.detail(_RETRY_INFO).get("retryDelay", "")))
        return float(match.group(1)) if match else None


async def raise_for_status(upstream: Upstream, resp: aiohttp.ClientResponse, model: str) -> None:
    """Raise what a non-200 answer means, with the upstream's own message in it."""
    error = GoogleError.parse((await resp.text())[:8192])
    raise error_for(upstream, resp.status, error, model, resp.headers)


def error_for(
    upstream: Upstream,
    http_status: int,
    error: GoogleError,
    model: str,
    headers: Mapping[str, str] | None = None,
) -> ModelyardError:
    """The modelyard error for a failure answered with `http_status` (or reported in a
    stream with that ``code``) and `error`."""
    headers = headers or {}
    detail = upstream_text(error.message)
    named = f"{error.status}: {detail}" if error.status else detail
    where = upstream.label
    delay = retry_after_s(headers) if headers else None
    if delay is None:
        delay = error.retry_delay_s()
    denied = f"(HTTP {http_status}; not the caller's credentials): {named}"
    if http_status == 429 or error.status == "RESOURCE_EXHAUSTED":
        return RateLimited(
            f"{where} rate-limited the request: {named}", delay or DEFAULT_RATE_LIMIT_RETRY_S
        )
    if http_status == 401 or error.status == "UNAUTHENTICATED" or _key_invalid(error):
        return ProviderAuthFailed(f"{where} rejected this gateway's {upstream.credential} {denied}")
    if http_status == 403 or error.status in ("PERMISSION_DENIED", "FAILED_PRECONDITION"):
        return ProviderAccessDenied(f"{where} denied this gateway's {upstream.credential} {denied}")
    if http_status == 404 or error.status == "NOT_FOUND":
        return ModelNotFound(model, f"{where} ({named})")
    if http_status == 400 or error.status == "INVALID_ARGUMENT":
        if _CONTEXT_TOO_LONG.search(error.message):
            return ContextLengthExceeded(
                f"{where} rejected the request: {named}", provider_code=error.status
            )
        return InvalidRequest(f"{where} rejected the request: {named}")
    if http_status >= 500 or error.status in ("INTERNAL", "UNAVAILABLE", "DEADLINE_EXCEEDED"):
        return BackendUnavailable(f"{where} answered HTTP {http_status}: {named}", delay)
    return ProviderError(f"{where} answered HTTP {http_status}: {named}")


def _key_invalid(error: GoogleError) -> bool:
    return error.detail(_ERROR_INFO).get("reason") == "API_KEY_INVALID"


def unreachable(upstream: Upstream, exc: BaseException) -> BackendUnavailable:
    """The error for a call that never got an answer (refused, reset, timed out)."""
    return BackendUnavailable(
        f"{upstream.label} at {scrub(upstream.base_url)} is unreachable: {describe(exc)}"
    )
