"""What Bedrock's failures mean: its error types, as an HTTP answer or a stream event.

Bedrock Runtime names each failure by type (Bedrock Runtime API reference,
API version 2023-09-30, the Converse and ConverseStream "Errors" sections,
https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html;
the same table is in botocore's service model ``bedrock-runtime/2023-09-30``).
An HTTP answer carries the type in its ``x-amzn-ErrorType`` header
(``ThrottlingException:http://internal.amazon.com/coral/...``) and/or the JSON
body's ``__type`` (``com.amazon.coral.service#UnrecognizedClientException``),
with the text in the body's ``message``; inside a ConverseStream the same
types arrive as exception events (``:message-type exception``, the type
lowerCamelCase in ``:exception-type``, ``{"message": ...}`` as payload).

===============================  ======  ======================================
Bedrock error type               HTTP    modelyard error
===============================  ======  ======================================
ThrottlingException              429     RateLimited (Retry-After, else 1 s)
ServiceQuotaExceededException    400     RateLimited (Retry-After, else 1 s)
ModelNotReadyException           429     BackendUnavailable, retry in 5 s unless
                                          told (the model is being loaded)
ServiceUnavailableException      503     BackendUnavailable
InternalServerException          500     BackendUnavailable
ModelTimeoutException            408     BackendUnavailable
ModelStreamErrorException        424     BackendUnavailable before any text,
                                          StreamTruncated after some
ModelErrorException              424     ProviderError (the model failed)
AccessDeniedException            403     ProviderAccessDenied
UnrecognizedClientException,     403     ProviderAuthFailed (the signature or
 InvalidSignatureException,               the credentials were refused)
 ExpiredTokenException, ...
ResourceNotFoundException        404     ModelNotFound
ValidationException              400     ContextLengthExceeded when it says the
                                          input is too long, ModelNotFound when
                                          the model id is invalid, else
                                          InvalidRequest
(no known type)                  by status, as `modelyard.backends.openai_compat.upstream`
===============================  ======  ======================================

Credential failures name this gateway's AWS credentials, never the caller's.
The upstream's text passes through `modelyard_client.scrub.upstream_text`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import aiohttp

from modelyard.backends.openai_compat.upstream import DEFAULT_RATE_LIMIT_RETRY_S, retry_after_s
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
    StreamTruncated,
)
from modelyard_client.scrub import upstream_text

# A model still loading (an imported or provisioned model's cold start) says nothing of
# when to come back; the AWS SDKs retry it five times with backoff.
MODEL_NOT_READY_RETRY_S = 5.0

THROTTLED = frozenset({"ThrottlingException", "ServiceQuotaExceededException"})
UNAVAILABLE = frozenset(
    {
        "ServiceUnavailableException",
        "InternalServerException",
        "ModelTimeoutException",
        "ModelNotReadyException",
    }
)
# AWS's common errors for a request whose signature or credentials were refused.
CREDENTIALS_REFUSED = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "IncompleteSignatureException",
        "ExpiredTokenException",
        "MissingAuthenticationTokenException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
    }
)
# ValidationException texts of an input over the model's context window, e.g. "Input is
# too long for requested model." or Claude's "prompt is too long: 210000 tokens > 200000".
_CONTEXT_TOO_LONG = re.compile(
    r"too long|context (?:window|length)|too many (?:input )?tokens|maximum context", re.I
)
_INVALID_MODEL_ID = re.compile(r"model identifier is invalid", re.I)


def error_type(headers: Mapping[str, str], body: Any) -> str:
    """The Bedrock error type of a failed answer: the header's, else the body's ``__type``."""
    header = headers.get("x-amzn-ErrorType", "").split(":", 1)[0].strip()
    if header:
        return header
    if isinstance(body, dict):
        named = body.get("__type") or body.get("code") or ""
        if isinstance(named, str):
            return named.rsplit("#", 1)[-1]
    return ""


def error_message(body: Any, text: str) -> str:
    """The body's ``message`` (``Message`` in some AWS errors), else the raw text."""
    if isinstance(body, dict):
        message = body.get("message", body.get("Message"))
        if isinstance(message, str):
            return message
    return text


async def raise_for_response(backend: str, model_id: str, resp: aiohttp.ClientResponse) -> None:
    """Raise the error a non-200 answer of Bedrock means."""
    text = (await resp.text(errors="replace"))[:8192]
    try:
        body: Any = json.loads(text)
    except ValueError:
        body = None
    raise failure(
        backend,
        model_id,
        error_type(resp.headers, body),
        error_message(body, text),
        status=resp.status,
        headers=resp.headers,
    )


def failure(
    backend: str,
    model_id: str,
    type_: str,
    message: str,
    *,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
    streamed: bool = False,
) -> ModelyardError:
    """The modelyard error for a Bedrock error `type_` (or, for an unknown one, `status`).

    `status` None: an exception event inside a stream; `streamed`: text had gone out.
    """
    headers = headers or {}
    detail = upstream_text(message)
    where = f"Bedrock backend '{backend}'"
    said = f"{type_ or f'HTTP {status}'}: {detail}"
    if type_ in THROTTLED or (not type_ and status == 429):
        return RateLimited(
            f"{where} was throttled for '{model_id}' ({said})",
            retry_after_s(headers) or DEFAULT_RATE_LIMIT_RETRY_S,
        )
    if type_ == "ModelNotReadyException":
        return BackendUnavailable(
            f"{where}: model '{model_id}' is not ready yet, it is being loaded ({said})",
            retry_after_s(headers) or MODEL_NOT_READY_RETRY_S,
        )
    if type_ in UNAVAILABLE or (not type_ and status is not None and status >= 500):
        return BackendUnavailable(
            f"{where} failed for '{model_id}' ({said})", retry_after_s(headers)
        )
    if type_ == "ModelStreamErrorException":
        if streamed:
            return StreamTruncated(
                f"{where} broke off the stream for '{model_id}' ({said}): the answer is truncated"
            )
        return BackendUnavailable(f"{where} failed for '{model_id}' ({said})")
    if type_ in CREDENTIALS_REFUSED or (not type_ and status == 401):
        return ProviderAuthFailed(
            f"{where} refused this gateway's AWS credentials (not the caller's credentials): {said}"
        )
    if type_ == "AccessDeniedException" or (not type_ and status == 403):
        return ProviderAccessDenied(
            f"{where} denied this gateway's AWS credentials access to '{model_id}' (not the "
            f"caller's credentials; the IAM policy needs bedrock:InvokeModelWithResponseStream "
            f"and the model's access granted): {said}"
        )
    if type_ == "ResourceNotFoundException" or (not type_ and status == 404):
        return ModelNotFound(model_id, f"{where} ({said})")
    if type_ == "ValidationException" or (not type_ and status in (400, 413, 422)):
        if _INVALID_MODEL_ID.search(message):
            return ModelNotFound(model_id, f"{where} ({said})")
        if _CONTEXT_TOO_LONG.search(message):
            return ContextLengthExceeded(
                f"{where} refused the input for '{model_id}' as too long: {said}",
                provider_code=type_ or "ValidationException",
            )
        return InvalidRequest(f"{where} rejected the request for '{model_id}': {said}")
    if type_ == "ModelErrorException":
        return ProviderError(f"{where}: the model '{model_id}' failed on the request ({said})")
    return ProviderError(f"{where} failed for '{model_id}' ({said})")
