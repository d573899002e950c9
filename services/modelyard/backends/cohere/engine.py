"""Cohere's Chat v2 API (``POST <base_url>/v2/chat``, streamed) behind the `Engine` protocol.

One aiohttp session (one connection pool) per engine, opened on first use
and closed in `close`; aiohttp for the reason the OpenAI-wire engine gives
(`modelyard.backends.openai_compat.engine`). The key is sent as
``Authorization: Bearer <key>``, read on each call (`ProviderEndpoint.key`),
so a key rotated on SIGHUP applies from the next call; it is never logged
and never part of an error.

At most `max_concurrency` calls run against Cohere at once and `max_queue`
more wait (`Admission`); a call beyond both is refused with `Overloaded`
before anything is sent. A request Cohere cannot honour is refused before it
is sent (`request.chat_body`); Cohere's failures become the errors
`upstream` names, the stream's own `chat_stream`'s.

Models: those `models` lists, else the Cohere chat and Embed models of the
hosted catalog (discovery/data/api_models.yaml), which also prices them; an
Embed model (``embed-...``) makes embeddings (`embeddings`) and does not
chat. A hosted model has nothing to load: `load` only checks the id is one
this engine serves.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import replace

import aiohttp

from modelyard.backends.admission import Admission
from modelyard.backends.catalog_prices import catalog_listing, with_catalog_figures
from modelyard.backends.cohere.chat_stream import CohereChatStream
from modelyard.backends.cohere.embeddings import (
    catalog_embedding_models,
    create_embeddings,
    is_embedding_model,
)
from modelyard.backends.cohere.request import chat_body
from modelyard.backends.cohere.upstream import raise_for_status
from modelyard.backends.content_parts import image_count, with_images
from modelyard.backends.engine import Embeddings, EngineHealth, Piece
from modelyard.backends.openai_compat.providers import ProviderEndpoint
from modelyard.backends.openai_compat.upstream import describe, unreachable
from modelyard.catalog_ids import catalog_id
from modelyard.hosted_catalog import load_catalog
from modelyard_client.errors import CatalogFileError, ModelNotFound, StreamTruncated
from modelyard_client.scrub import scrub
from modelyard_client.v1 import common_pb2

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.cohere.com"
CATALOG_KIND = "cohere"  # its models' entry in the hosted catalog
# What every Cohere chat model does (each Command model calls tools); JSON output is the
# catalog's.
CAPABILITIES = (
    common_pb2.CAPABILITY_CHAT,
    common_pb2.CAPABILITY_TEXT_GENERATION,
    common_pb2.CAPABILITY_STREAMING,
    common_pb2.CAPABILITY_TOOLS,
)


def catalog_chat_models() -> list[str]:
    """The Cohere models of the hosted catalog that chat (its embedding models do not)."""
    provider = load_catalog().providers.get(CATALOG_KIND)
    if provider is None:
        return []
    return [e.name for e in provider.entries if common_pb2.CAPABILITY_CHAT in e.capabilities]


class CohereEngine:
    kind = "cohere"
    takes_tools = True  # tools, tool choice and tool turns on Chat v2 (tools.py)

    def __init__(self, provider: ProviderEndpoint, connect_timeout_s: float = 5.0) -> None:
        """`provider`: Cohere's base URL (without /v2), the key and the limits;
        `connect_timeout_s`: for a call's TCP (and TLS) connection."""
        self._provider = provider
        self._connect_timeout_s = connect_timeout_s
        self._session: aiohttp.ClientSession | None = None
        self._names: dict[str, str] = {}  # catalog id -> Cohere model name
        self._listed: dict[str, common_pb2.ModelEntry] = {}  # the catalog's, by name
        self._health = EngineHealth(common_pb2.HEALTH_STATUS_UNSPECIFIED, "not started")
        name = provider.name
        self.admission = Admission.for_upstream(name, provider.max_concurrency, provider.max_queue)

    @property
    def provider(self) -> ProviderEndpoint:
        return self._provider

    @property
    def backend(self) -> str:
        return self._provider.name

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._provider.max_concurrency, keepalive_timeout=60
                ),
                headers={"Content-Type": "application/json", "Accept": "text/event-stream"},
            )
        return self._session

    async def start(self) -> None:
        try:
            names = list(self._provider.models) or [
                *catalog_chat_models(),
                *catalog_embedding_models(),
            ]
        except CatalogFileError as exc:
            self._health = EngineHealth(common_pb2.HEALTH_STATUS_UNHEALTHY, exc.message)
            log.warning("%s: %s", self._provider.name, exc.message)
            return
        self._names = {catalog_id(self._provider.name, n): n for n in names}
        self._listed = catalog_listing(CATALOG_KIND, self._provider.name)
        self._http()
        self._health = EngineHealth(common_pb2.HEALTH_STATUS_HEALTHY)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def models(self) -> list[common_pb2.ModelEntry]:
        """What is served, with the catalog's prices and context window (`catalog_prices`)."""
        return [
            with_catalog_figures(self._entry(model_id, name), self._listed.get(name))
            for model_id, name in sorted(self._names.items())
        ]

    def _entry(self, model_id: str, name: str) -> common_pb2.ModelEntry:
        return common_pb2.ModelEntry(
            id=model_id,
            name=name,
            provider=self._provider.name,
            capabilities=[common_pb2.CAPABILITY_EMBEDDING]
            if is_embedding_model(name)
            else CAPABILITIES,
            input_modalities=[common_pb2.MODALITY_TEXT],
            output_modalities=[
                common_pb2.MODALITY_TENSOR if is_embedding_model(name) else common_pb2.MODALITY_TEXT
            ],
            metadata={"base_url": scrub(self._provider.base_url)},
        )

    def loaded_models(self) -> list[str]:
        return sorted(self._names)

    def health(self) -> EngineHealth:
        return self._health

    async def load(self, model_id: str) -> float:
        started = time.perf_counter()
        self._upstream_name(model_id)
        return (time.perf_counter() - started) * 1000

    async def unload(self, model_id: str) -> bool:
        self._upstream_name(model_id)
        return False  # served remotely: never held in this process

    def serves(self, model_id: str) -> bool:
        return model_id in self._names

    def _upstream_name(self, model_id: str) -> str:
        name = self._names.get(model_id)
        if name is None:
            raise ModelNotFound(model_id, f"the '{self._provider.name}' backend")
        return name

    async def embed(self, model_id: str, inputs: Sequence[str], dimensions: int) -> Embeddings:
        """``POST <base_url>/v2/embed`` (`embeddings.create_embeddings`), in a call slot."""
        name = self._upstream_name(model_id)
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self._connect_timeout_s, sock_read=self._provider.timeout_s
        )
        async with self.admission.slot():
            return await create_embeddings(
                self._http(), self._provider, model_id, name, inputs, dimensions, timeout
            )

    async def infer_stream(
        self,
        model_id: str,
        model_input: common_pb2.Input,
        params: common_pb2.GenerationParams,
    ) -> AsyncGenerator[Piece, None]:
        name = self._upstream_name(model_id)
        # Refusals before the call; `dropped`: what the request let be left out.
        body, dropped = chat_body(
            name, model_input, params, model_id=model_id, provider=self._provider.name
        )
        images = image_count(model_input)
        url = f"{self._provider.base_url}/v2/chat"
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self._connect_timeout_s, sock_read=self._provider.timeout_s
        )
        streamed = False
        async with self.admission.slot():
            try:
                async with self._http().post(
                    url, json=body, timeout=timeout, headers=self._provider.headers()
                ) as resp:
                    if resp.status != 200:
                        await raise_for_status(self._provider, resp, model=model_id)
                    stream = CohereChatStream(self._provider.name, model_id)
                    async for piece in stream.pieces(resp.content.iter_any()):
                        streamed = True
                        if dropped and piece.finish_reason:
                            piece = replace(piece, dropped_params=dropped)
                        yield with_images(piece, images)
            except (aiohttp.ClientError, TimeoutError) as exc:
                if streamed or isinstance(exc, aiohttp.ClientPayloadError):
                    raise StreamTruncated(
                        f"upstream '{self._provider.name}' broke off the stream for "
                        f"'{model_id}' ({describe(exc)}): the answer is truncated"
                    ) from exc
                raise unreachable(self._provider, exc) from exc
