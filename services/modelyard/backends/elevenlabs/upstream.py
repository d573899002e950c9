"""Talking to ElevenLabs: its key header, and what its failures mean.

Every request carries the key in ``xi-api-key`` (the reference's only
authentication), read on each call, so a key rotated by SIGHUP applies from
the next one; it is never logged and never part of an error.

A failure is answered with a JSON ``detail``: ElevenLabs' own errors as
``{"detail": {"status": "<code>", "message": "..."}}`` (help centre, "API -
Error Code 400 or 401", https://help.elevenlabs.io/hc/en-us/articles/19572237925521),
and a request its schema refuses as FastAPI's HTTP 422 ``{"detail": [{"loc",
"msg", "type"}]}`` (the Stream speech reference's ``422 Validation Error``).
The ``status`` code decides where it names the problem; the HTTP status
otherwise:

=============================  ======================  ===================================
answer                         modelyard error         why
=============================  ======================  ===================================
429 (``too_many_concurrent_    RateLimited             its ``Retry-After``, else 1 s
requests``, ``system_busy``)
401 ``quota_exceeded``,        ProviderAccessDenied    the account's characters are spent,
``missing_permissions``; 403                           or the key may not do this
401 (``invalid_api_key``...)   ProviderAuthFailed      the gateway's key, not the caller's
``voice_not_found`` (any 4xx)  InvalidRequest          field ``params.voice``
``max_character_limit_         ContextLengthExceeded   the text is over the model's limit
exceeded``, ``text_too_long``
400, 404, 422                  InvalidRequest          what it said (a 422's ``loc: msg``)
500-599                        BackendUnavailable      with its ``Retry-After`` when given
any other                      ProviderError
=============================  ======================  ===================================

A refusal keeps the ``status`` code as `ProviderRefusal.provider_code`. What
ElevenLabs said is kept in the message, scrubbed of credentials and capped
(`modelyard_client.scrub.upstream_text`). The rate-limit bodies are those a
third-party guide quotes (they carry a ``status`` and may lack a message).
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from modelyard.backends.openai_compat.providers import ProviderEndpoint
from modelyard.backends.openai_compat.upstream import DEFAULT_RATE_LIMIT_RETRY_S, retry_after_s
from modelyard_client.errors import (
    BackendUnavailable,
    ContextLengthExceeded,
    InvalidRequest,
    ModelyardError,
    ProviderAccessDenied,
    ProviderAuthFailed,
    ProviderError,
    RateLimited,
)
from modelyard_client.scrub import upstream_text

KEY_HEADER = "xi-api-key"
ACCOUNT_REFUSALS = frozenset({"quota_exceeded", "missing_permissions"})
TEXT_TOO_LONG = frozenset({"max_character_limit_exceeded", "text_too_long"})


def request_headers(endpoint: ProviderEndpoint) -> dict[str, str]:
    """What a request sends now: the extra headers, then the current key."""
    headers = dict(endpoint.extra_headers)
    key = endpoint.key()
    if key:
        headers[KEY_HEADER] = key
    return headers


async def error_of_response(
    endpoint: ProviderEndpoint, resp: aiohttp.ClientResponse
) -> ModelyardError:
    """The error an HTTP failure of a speech request means."""
    code, message = error_detail((await resp.text())[:8192])
    where = f"upstream '{endpoint.name}'"
    status = resp.status
    detail = upstream_text(message)
    said = (f" ({code})" if code else "") + (f": {detail}" if detail else "")
    if status == 429:
        return RateLimited(
            f"{where} rate-limited the request{said}",
            retry_after_s(resp.headers) or DEFAULT_RATE_LIMIT_RETRY_S,
        )
    if status == 403 or (status == 401 and code in ACCOUNT_REFUSALS):
        return ProviderAccessDenied(
            f"{where} refused this gateway's ElevenLabs account or key "
            f"(HTTP {status}; not the caller's credentials){said}"
        )
    if status == 401:
        return ProviderAuthFailed(
            f"{where} rejected this gateway's API key for ElevenLabs "
            f"(HTTP 401; not the caller's credentials){said}"
        )
    if 400 <= status < 500 and code == "voice_not_found":
        return InvalidRequest(f"params.voice: {where} has no such voice{said}", "params.voice")
    if status in (400, 422) and code in TEXT_TOO_LONG:
        return ContextLengthExceeded(f"{where} refused the text{said}", code)
    if status in (400, 404, 422):
        return InvalidRequest(f"{where} rejected the request (HTTP {status}){said}")
    if status >= 500:
        return BackendUnavailable(
            f"{where} answered HTTP {status}{said}", retry_after_s(resp.headers)
        )
    return ProviderError(f"{where} answered HTTP {status}{said}")


def error_detail(text: str) -> tuple[str, str]:
    """The ``detail.status`` code (or "") and the message of an error body (none beside a
    code that came alone); no code and the text itself when it is not one of ElevenLabs'
    shapes. Raw: `upstream_text` makes it fit for an error."""
    try:
        body = json.loads(text)
    except ValueError:
        return "", text
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, dict):
        code = detail.get("status")
        code = code if isinstance(code, str) else ""
        message = detail.get("message")
        return code, message if isinstance(message, str) else ("" if code else text)
    if isinstance(detail, list) and detail:
        return "", "; ".join(_validation_problem(p) for p in detail)
    if isinstance(detail, str):
        return "", detail
    return "", text


def _validation_problem(problem: Any) -> str:
    """One FastAPI validation error as ``body.text: Field required``."""
    if not isinstance(problem, dict):
        return str(problem)
    loc = problem.get("loc")
    where = ".".join(str(p) for p in loc) if isinstance(loc, list) else ""
    msg = str(problem.get("msg", problem))
    return f"{where}: {msg}" if where else msg
