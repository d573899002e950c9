"""The Gemini engine: Google's models through the Gemini API or Vertex AI, streamed.

One aiohttp session (one connection pool) per engine, as the OpenAI-wire
engine has, and the same admission: at most `max_concurrency` calls run
against the upstream and `max_queue` more wait; a call beyond both is refused
with `Overloaded` before anything is sent. The request body is built, and bad
input refused, before a slot is taken (`modelyard.backends.gemini.request`).

A call is ``POST {model}:streamGenerateContent?alt=sse``; the gateway's
unary Generate gathers the same stream. `load` checks the model answers with
``POST {model}:countTokens`` (free of charge, and it needs the model and the
credential to be good); there is nothing to unload.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncGenerator
from typing import Any

import aiohttp

from modelyard.backends.admission import Admission
from modelyard.backends.content_parts import image_count, with_images
from modelyard.backends.engine import EngineHealth, Piece
from modelyard.backends.gemini.endpoint import GeminiEndpoint
from modelyard.backends.gemini.request import request_body
from modelyard.backends.gemini.stream import GenerateStream
from modelyard.backends.gemini.upstream import raise_for_status, unreachable
from modelyard.backends.openai_compat.upstream import describe
from modelyard.backends.speech.unsupported_params import with_dropped
from modelyard.catalog_ids import catalog_id
from modelyard.hosted_catalog import load_catalog
from modelyard_client.errors import CatalogFileError, ModelNotFound, ModelyardError, StreamTruncated
from modelyard_client.scrub import scrub
from modelyard_client.v1 import common_pb2

log = logging.getLogger(__name__)

CONTROL_CONNECTIONS = 4  # beyond the call slots, for `load`'s checks
# What may stand in a model's URL segment: Google's model ids (gemini-2.5-flash,
# gemini-2.0-flash-001); anything else cannot name a model and must not change the URL.
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]*$")
_CAPABILITIES = (
    common_pb2.CAPABILITY_CHAT,
    common_pb2.CAPABILITY_TEXT_GENERATION,
    common_pb2.CAPABILITY_STREAMING,
    common_pb2.CAPABILITY_JSON_OUTPUT,
)
# What a model does here when the catalog says it can: images (inlineData parts) and
# function calling (`tools`).
_FROM_CATALOG = (common_pb2.CAPABILITY_VISION, common_pb2.CAPABILITY_TOOLS)


class GeminiEngine:
    takes_tools = True  # function declarations and tool turns (gemini/tools.py)

    def __init__(self, endpoint: GeminiEndpoint, connect_timeout_s: float = 5.0) -> None:
        self._endpoint = endpoint
        self._upstream = endpoint.upstream
        self._connect_timeout_s = connect_timeout_s
        self._session: aiohttp.ClientSession | None = None
        self._entries: dict[str, common_pb2.ModelEntry] = {}
        self._health = EngineHealth(common_pb2.HEALTH_STATUS_UNSPECIFIED, "not started")
        name = endpoint.name
        self.admission = Admission.for_upstream(name, endpoint.max_concurrency, endpoint.max_queue)

    @property
    def kind(self) -> str:
        return self._endpoint.kind

    @property
    def backend(self) -> str:
        return self._endpoint.name

    def _http(self) -> aiohttp.ClientSession:
        # The credential is not a session header: each call sends the one current then.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._endpoint.max_concurrency + CONTROL_CONNECTIONS,
                    keepalive_timeout=60,
                ),
                headers={"Content-Type": "application/json"},
            )
        return self._session

    async def start(self) -> None:
        self._entries = {e.id: e for e in self._catalog_entries()}
        try:  # Vertex: load the credentials and get a first token, to report what is wrong
            await self._endpoint.credential.headers()
        except ModelyardError as exc:
            self._health = EngineHealth(common_pb2.HEALTH_STATUS_UNHEALTHY, exc.message)
            log.warning("%s: %s", self._endpoint.name, exc.message)
            return
        self._health = EngineHealth(common_pb2.HEALTH_STATUS_HEALTHY)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _catalog_entries(self) -> list[common_pb2.ModelEntry]:
        """The configured models (else the hosted catalog's for this kind), with the
        catalog's context window and prices where it lists them."""
        try:
            listed = load_catalog().providers.get(self._endpoint.kind)
        except CatalogFileError as exc:
            log.warning("%s: %s", self._endpoint.name, exc.message)
            listed = None
        known = {e.name: e for e in listed.entries} if listed is not None else {}
        names = self._endpoint.models or tuple(known)
        entries = []
        for name in names:
            entry = common_pb2.ModelEntry(
                id=catalog_id(self._endpoint.name, name),
                name=name,
                provider=self._endpoint.name,
                capabilities=_CAPABILITIES,
                input_modalities=[common_pb2.MODALITY_TEXT],
                output_modalities=[common_pb2.MODALITY_TEXT],
                metadata={"base_url": scrub(self._endpoint.root)},
            )
            if name in known:
                entry.context_window = known[name].context_window
                entry.cost.CopyFrom(known[name].cost)
                for capability in _FROM_CATALOG:
                    if capability in known[name].capabilities:
                        entry.capabilities.append(capability)
                entry.metadata.update(known[name].metadata)
            entries.append(entry)
        return entries

    def models(self) -> list[common_pb2.ModelEntry]:
        return [self._entries[k] for k in sorted(self._entries)]

    def loaded_models(self) -> list[str]:
        return sorted(self._entries)

    def health(self) -> EngineHealth:
        return self._health

    def serves(self, model_id: str) -> bool:
        return model_id in self._entries or model_id.startswith(f"{self._endpoint.name}/")

    def _upstream_name(self, model_id: str) -> str:
        entry = self._entries.get(model_id)
        if entry is not None:
            return entry.name
        prefix = f"{self._endpoint.name}/"
        name = model_id[len(prefix) :] if model_id.startswith(prefix) else ""
        if not _MODEL_NAME.match(name):
            raise ModelNotFound(model_id, f"the '{self._endpoint.name}' backend")
        return name

    def _timeout(self) -> aiohttp.ClientTimeout:
        # sock_connect, not connect: a wait for a pooled connection is not the upstream's fault.
        return aiohttp.ClientTimeout(
            total=None, sock_connect=self._connect_timeout_s, sock_read=self._endpoint.timeout_s
        )

    async def load(self, model_id: str) -> float:
        """Check the upstream answers for the model (remote models have nothing to load)."""
        started = time.perf_counter()
        name = self._upstream_name(model_id)
        body: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": "ping"}]}]}
        url = self._endpoint.method_url(name, "countTokens")
        try:
            headers = await self._endpoint.credential.headers()
            async with self._http().post(
                url, json=body, headers=headers, timeout=self._timeout()
            ) as resp:
                if resp.status != 200:
                    await raise_for_status(self._upstream, resp, model_id)
                await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise unreachable(self._upstream, exc) from exc
        return (time.perf_counter() - started) * 1000

    async def unload(self, model_id: str) -> bool:
        self._upstream_name(model_id)
        return False  # served remotely: never held in this process

    async def infer_stream(
        self,
        model_id: str,
        model_input: common_pb2.Input,
        params: common_pb2.GenerationParams,
    ) -> AsyncGenerator[Piece, None]:
        name = self._upstream_name(model_id)
        body, dropped = request_body(self._endpoint.name, model_input, params, model_id)
        images = image_count(model_input)
        url = self._endpoint.method_url(name, "streamGenerateContent") + "?alt=sse"
        streamed = False
        async with self.admission.slot():
            headers = await self._endpoint.credential.headers()
            try:
                async with self._http().post(
                    url, json=body, headers=headers, timeout=self._timeout()
                ) as resp:
                    if resp.status != 200:
                        await raise_for_status(self._upstream, resp, model_id)
                    stream = GenerateStream(self._upstream, model_id)
                    async for piece in stream.pieces(resp.content.iter_any()):
                        streamed = True
                        yield with_dropped(with_images(piece, images), dropped)
            except (aiohttp.ClientError, TimeoutError) as exc:
                if streamed or isinstance(exc, aiohttp.ClientPayloadError):
                    raise StreamTruncated(
                        f"upstream '{self._endpoint.name}' broke off the stream for "
                        f"'{model_id}' ({describe(exc)}): the answer is truncated"
                    ) from exc
                raise unreachable(self._upstream, exc) from exc
