"""What Cohere's failures mean: HTTP statuses and error bodies, mapped onto the hierarchy.

Cohere's errors reference (https://docs.cohere.com/reference/errors, and
the status codes its Chat v2 reference lists for ``POST /v2/chat``) answers
a failure with ``{"message": "..."}`` (some with an ``id`` beside it):

=====================  =====================  =====================================
HTTP status            modelyard error        why
=====================  =====================  =====================================
429                    RateLimited            its ``Retry-After``, else 1 s
401, 498               ProviderAuthFailed     key missing, invalid or expired
402                    ProviderAccessDenied   the account's billing limit is reached
403                    ProviderAccessDenied   the key may not use this
404, model named       ModelNotFound          "model 'x' not found ..."
400 "too many tokens"  ContextLengthExceeded  the prompt is over the model's window
 (not "max tokens")
400, 422               InvalidRequest         "invalid request: ...", and "too many
                                              tokens: max tokens must be ..."
499                    BackendUnavailable     "request cancelled", "streaming error":
                                              Cohere says to try again
500-599                BackendUnavailable     with its ``Retry-After`` when given
any other              ProviderError
=====================  =====================  =====================================

Cohere documents no content-policy error status: a content refusal comes as
the stream's finish reason (`chat_stream`). Cohere's bodies have no error
code, so a refusal's `provider_code` is empty. The message is Cohere's own,
scrubbed of credentials and capped (`modelyard_client.scrub.upstream_text`); a 401,
402 or 403 says it is about the gateway's key for Cohere, not the caller's.
"""

from __future__ import annotations

import json

import aiohttp

from modelyard.backends.openai_compat.providers import ProviderEndpoint
from modelyard.backends.openai_compat.upstream import DEFAULT_RATE_LIMIT_RETRY_S, retry_after_s
from modelyard_client.errors import (
    BackendUnavailable,
    ContextLengthExceeded,
    InvalidRequest,
    ModelNotFound,
    ProviderAccessDenied,
    ProviderAuthFailed,
    ProviderError,
    RateLimited,
)
from modelyard_client.scrub import upstream_text

# Cohere's 400 messages for a prompt over the window start with this; one about
# max_tokens over the model's output limit starts with it too, and is no refusal of the prompt.
TOO_MANY_TOKENS = "too many tokens"
MAX_TOKENS_TOO_HIGH = "too many tokens: max tokens"


async def raise_for_status(
    provider: ProviderEndpoint, resp: aiohttp.ClientResponse, *, model: str
) -> None:
    """Raise the error Cohere's failed answer means, with its message in it."""
    raw = error_message((await resp.text())[:8192])
    detail = upstream_text(raw)
    where = f"upstream '{provider.name}'"
    status = resp.status
    if status == 429:
        raise RateLimited(
            f"{where} rate-limited the request: {detail}",
            retry_after_s(resp.headers) or DEFAULT_RATE_LIMIT_RETRY_S,
        )
    if status in (401, 498):
        raise ProviderAuthFailed(
            f"{where} rejected this gateway's API key for Cohere "
            f"(HTTP {status}; not the caller's credentials): {detail}"
        )
    if status == 402:
        raise ProviderAccessDenied(
            f"{where} refused this gateway's Cohere account: payment required, its billing "
            f"limit is reached (HTTP 402; not the caller's): {detail}"
        )
    if status == 403:
        raise ProviderAccessDenied(
            f"{where} denied this gateway's API key for Cohere "
            f"(HTTP 403; not the caller's credentials): {detail}"
        )
    if status == 404 and model:
        raise ModelNotFound(model, f"{where} ({detail})")
    lowered = raw.strip().lower()
    if status == 400 and lowered.startswith(TOO_MANY_TOKENS):
        if lowered.startswith(MAX_TOKENS_TOO_HIGH):
            raise InvalidRequest(
                f"{where} rejected the request: {detail}", field="params.max_tokens"
            )
        raise ContextLengthExceeded(f"{where} rejected the request: {detail}")
    if status in (400, 422):
        raise InvalidRequest(f"{where} rejected the request: {detail}")
    if status == 499:
        raise BackendUnavailable(f"{where} cancelled the request (HTTP 499): {detail}")
    if status >= 500:
        raise BackendUnavailable(
            f"{where} answered HTTP {status}: {detail}", retry_after_s(resp.headers)
        )
    raise ProviderError(f"{where} answered HTTP {status}: {detail}")


def error_message(text: str) -> str:
    """The ``message`` of a Cohere error body; the text itself when it is not one. Raw:
    `upstream_text` makes it fit for an error."""
    try:
        body = json.loads(text)
    except ValueError:
        return text
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return text
