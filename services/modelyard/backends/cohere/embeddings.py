"""Cohere's Embed API v2 (``POST <base_url>/v2/embed``) for the cohere engine.

The reference followed: Cohere's API reference, "Embed API (v2)"
(https://docs.cohere.com/reference/embed, read 2026-12-02). The body:
``model``, ``input_type`` (required from the v3 models on; ``search_document``
here, what texts to be stored and searched are embedded as), ``texts`` (at
most 96 a call), ``embedding_types`` (``["float"]``), ``output_dimension``
(256, 512, 1024 or 1536, embed-v4.0 and newer only), ``truncate`` (``END``,
Cohere's default, left to it). The answer: ``{"id", "embeddings": {"float":
[[numbers], ...]}, "texts", "meta": {"api_version", "billed_units":
{"input_tokens"}}, "response_type": "embeddings_by_type"}``. Failures are the
chat endpoint's (`upstream.raise_for_status`).

More than 96 texts go in consecutive calls of at most 96, in order, their
billed tokens summed. A `dimensions` Cohere cannot honour (not one of its four
lengths, or a v3 model, which has no ``output_dimension``) is refused naming
``dimensions`` and Cohere before anything is sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiohttp

from modelyard.backends.cohere.upstream import raise_for_status
from modelyard.backends.engine import Embeddings
from modelyard.backends.openai_compat.providers import ProviderEndpoint
from modelyard.backends.openai_compat.upstream import unreachable
from modelyard.hosted_catalog import load_catalog
from modelyard_client.errors import InvalidRequest, ProviderProtocolError
from modelyard_client.v1 import common_pb2

TEXTS_PER_CALL = 96  # Cohere's bound on `texts`
OUTPUT_DIMENSIONS = (256, 512, 1024, 1536)  # what `output_dimension` takes
INPUT_TYPE = "search_document"
CATALOG_KIND = "cohere"


def is_embedding_model(name: str) -> bool:
    """Whether a Cohere model name is an Embed model's (``embed-v4.0``,
    ``embed-english-v3.0``, ``embed-multilingual-light-v3.0``...)."""
    return name.startswith("embed-")


def catalog_embedding_models() -> list[str]:
    """The Cohere models of the hosted catalog that embed."""
    provider = load_catalog().providers.get(CATALOG_KIND)
    if provider is None:
        return []
    return [e.name for e in provider.entries if common_pb2.CAPABILITY_EMBEDDING in e.capabilities]


def embed_bodies(name: str, inputs: Sequence[str], dimensions: int) -> list[dict[str, Any]]:
    """The request bodies for `inputs` on Cohere's model `name`: one per 96 texts, in order;
    `InvalidRequest` naming ``dimensions`` for one Cohere cannot honour."""
    if dimensions and dimensions not in OUTPUT_DIMENSIONS:
        raise InvalidRequest(
            f"dimensions {dimensions}: Cohere's output_dimension is one of "
            f"{', '.join(map(str, OUTPUT_DIMENSIONS))} ('{name}')",
            field="dimensions",
        )
    if dimensions and "-v3" in name:
        raise InvalidRequest(
            f"dimensions: Cohere's '{name}' has no output_dimension (embed-v4.0 and newer have)",
            field="dimensions",
        )
    bodies = []
    for start in range(0, len(inputs), TEXTS_PER_CALL):
        body: dict[str, Any] = {
            "model": name,
            "input_type": INPUT_TYPE,
            "texts": list(inputs[start : start + TEXTS_PER_CALL]),
            "embedding_types": ["float"],
        }
        if dimensions:
            body["output_dimension"] = dimensions
        bodies.append(body)
    return bodies


async def create_embeddings(
    http: aiohttp.ClientSession,
    provider: ProviderEndpoint,
    model_id: str,
    name: str,
    inputs: Sequence[str],
    dimensions: int,
    client_timeout: aiohttp.ClientTimeout,
) -> Embeddings:
    """Every call `embed_bodies` makes, one after the other; the vectors in input order."""
    url = f"{provider.base_url}/v2/embed"
    vectors: list[list[float]] = []
    tokens = 0
    for body in embed_bodies(name, inputs, dimensions):
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
        got, billed = read_embeddings(answer, len(body["texts"]), provider.name, model_id)
        vectors.extend(got)
        tokens += billed
    return Embeddings(vectors, tokens)


def read_embeddings(
    answer: Any, count: int, provider: str, model_id: str
) -> tuple[list[list[float]], int]:
    """The float vectors of one Embed answer and its billed input tokens."""

    def wrong(problem: str) -> ProviderProtocolError:
        return ProviderProtocolError(
            f"upstream '{provider}' answered the embeddings of '{model_id}' with {problem}"
        )

    embeddings = answer.get("embeddings") if isinstance(answer, dict) else None
    floats = embeddings.get("float") if isinstance(embeddings, dict) else None
    if not isinstance(floats, list):
        raise wrong("no embeddings.float list")
    if len(floats) != count:
        raise wrong(f"{len(floats)} embeddings for {count} texts")
    vectors = []
    for i, values in enumerate(floats):
        if not (
            isinstance(values, list)
            and values
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        ):
            raise wrong(f"embeddings.float[{i}] not a list of numbers")
        vectors.append([float(v) for v in values])
    meta = answer.get("meta")
    billed = meta.get("billed_units") if isinstance(meta, dict) else None
    tokens = billed.get("input_tokens") if isinstance(billed, dict) else None
    counted = tokens if isinstance(tokens, int | float) and not isinstance(tokens, bool) else 0
    return vectors, max(int(counted), 0)
