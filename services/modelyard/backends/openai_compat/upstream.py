"""Talking to an OpenAI-compatible upstream: its model list, and what its failures mean.

The engine and discovery both list ``GET <base_url>/models`` through
`list_models`, and every failure of a call (HTTP status, unreachable, a body
that is not what was asked for) becomes the modelyard error named here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from modelyard.backends.openai_compat.providers import ProviderEndpoint
from modelyard.errors import (
    BackendUnavailable,
    InvalidRequest,
    ModelNotFound,
    ProviderAuthFailed,
    ProviderError,
    RateLimited,
)


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
        retry = resp.headers.get("retry-after", "")
        raise RateLimited(
            f"{where} rate-limited the request: {detail}",
            float(retry) if retry.replace(".", "", 1).isdigit() else 1.0,
        )
    if resp.status == 404 and model:
        raise ModelNotFound(model, f"{where} ({detail})")
    if resp.status in (401, 403):
        raise ProviderAuthFailed(
            f"{where} refused the gateway's credentials (HTTP {resp.status}): {detail}"
        )
    if resp.status in (400, 422):
        raise InvalidRequest(f"{where} rejected the request: {detail}")
    if resp.status >= 500:
        raise BackendUnavailable(f"{where} answered HTTP {resp.status}: {detail}")
    raise ProviderError(f"{where} answered HTTP {resp.status}: {detail}")


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
