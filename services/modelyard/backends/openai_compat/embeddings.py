"""Embeddings on the OpenAI wire: ``POST <base_url>/embeddings``, for the OpenAI-wire engine.

The reference followed: OpenAI's API reference, "Create embeddings"
(https://developers.openai.com/api/reference/resources/embeddings, read
2026-12-02). The body: ``model``, ``input`` (an array of strings, at most
2,048, none empty), ``dimensions`` (text-embedding-3 and later models only),
``encoding_format`` ``"float"`` (asked always: llama.cpp's server and most
compatible ones know no other). The answer: ``{"object": "list", "data":
[{"object": "embedding", "index": i, "embedding": [numbers]}], "model",
"usage": {"prompt_tokens", "total_tokens"}}``. Failures are the chat
endpoint's (`upstream.raise_for_status`: OpenAI's error body and statuses).

The answer is checked, never trusted: one vector per input, by ``index``,
each a list of numbers. llama.cpp's server (llama-cpp-python's
``llama_cpp.server --embedding true``) serving a model without pooling (a
generative GGUF, unless its ``<arch>.pooling_type`` says otherwise) answers
one vector per *token* of each input, a list of lists: that is refused as
`ProviderProtocolError` naming it, since no single vector per text can be
made of it here without choosing a pooling the model was not built for.

Which models embed: an upstream's model list says nothing of it, so the
name does (`is_embedding_model`), as for discovery (`discovery.openai_compat`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiohttp

from modelyard.backends.engine import Embeddings
from modelyard.backends.openai_compat.providers import ProviderEndpoint
from modelyard.backends.openai_compat.upstream import raise_for_status, unreachable
from modelyard_client.errors import ProviderProtocolError


def is_embedding_model(name: str) -> bool:
    """Whether an OpenAI-wire model name is an embedding model's: ``text-embedding-3-small``,
    ``nomic-embed-text``, ``mistral-embed``, ``bge-m3-embed``... (its name says so)."""
    return "embed" in name.lower()


def embeddings_body(name: str, inputs: Sequence[str], dimensions: int) -> dict[str, Any]:
    """The request body for `inputs` on the upstream's model `name`."""
    body: dict[str, Any] = {"model": name, "input": list(inputs), "encoding_format": "float"}
    if dimensions:
        body["dimensions"] = dimensions
    return body


async def create_embeddings(
    http: aiohttp.ClientSession,
    provider: ProviderEndpoint,
    model_id: str,
    name: str,
    inputs: Sequence[str],
    dimensions: int,
    client_timeout: aiohttp.ClientTimeout,
) -> Embeddings:
    """One ``POST /embeddings`` for `inputs`; its failures as `upstream` maps them, an answer
    that is not one vector per input `ProviderProtocolError`."""
    url = f"{provider.base_url}/embeddings"
    body = embeddings_body(name, inputs, dimensions)
    try:
        async with http.post(
            url, json=body, timeout=client_timeout, headers=provider.headers()
        ) as resp:
            if resp.status != 200:
                await raise_for_status(provider, resp, model=model_id)
            try:
                answer = await resp.json(content_type=None)
            except ValueError as exc:
                raise ProviderProtocolError(
                    f"upstream '{provider.name}' answered the embeddings of '{model_id}' "
                    "with a body that is not JSON"
                ) from exc
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise unreachable(provider, exc) from exc
    return read_embeddings(answer, len(inputs), f"upstream '{provider.name}'", model_id)


def read_embeddings(answer: Any, count: int, where: str, model_id: str) -> Embeddings:
    """The vectors of an embeddings answer, in input order, and its ``prompt_tokens``."""

    def wrong(problem: str) -> ProviderProtocolError:
        return ProviderProtocolError(
            f"{where} answered the embeddings of '{model_id}' with {problem}"
        )

    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, list):
        raise wrong("no data list")
    if len(data) != count:
        raise wrong(f"{len(data)} embeddings for {count} inputs")
    vectors: list[list[float] | None] = [None] * count
    for position, item in enumerate(data):
        if not isinstance(item, dict):
            raise wrong(f"data[{position}] not an embedding object")
        index = item.get("index", position)
        if not isinstance(index, int) or not 0 <= index < count or vectors[index] is not None:
            raise wrong(f"data[{position}] at index {index!r}, not one of the inputs once")
        values = item.get("embedding")
        if isinstance(values, list) and values and isinstance(values[0], list):
            raise wrong(
                f"one vector per token of input {index} ({len(values)} of them), not one per "
                "input: the model has no pooling (an embedding model, or a server set to pool "
                "its tokens, makes one)"
            )
        if not isinstance(values, list) or not values:
            raise wrong(f"data[{position}].embedding not a list of numbers")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            raise wrong(f"data[{position}].embedding holding something other than numbers")
        vectors[index] = [float(v) for v in values]
    usage = answer.get("usage")
    tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    counted = tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else 0
    return Embeddings([v for v in vectors if v is not None], max(counted, 0))
