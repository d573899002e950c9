"""AWS Bedrock models through ConverseStream, signed with SigV4, over one aiohttp pool.

Every generation is ``POST {endpoint}/model/{modelId}/converse-stream``
(Bedrock Runtime API reference, API version 2023-09-30), the endpoint
``https://bedrock-runtime.{region}.amazonaws.com`` unless ``endpoint`` says
otherwise; the model id goes in the path percent-encoded (``:`` as ``%3A``,
an ARN's ``/`` as ``%2F``) and is sent exactly so, as the signature covers it.
`Generate` gets the same stream, gathered by the gateway. A model listed in
``non_streaming_models`` (one Bedrock does not stream) is asked with
``POST .../model/{modelId}/converse`` instead, its answer one piece
(`converse_answer`).

The request body is `converse_request`'s, refused there before any call when
Converse cannot take it; the signature `signing`'s; the answer
`converse_stream`'s; the errors `failures`'. At most ``max_concurrency`` calls
run against Bedrock at once and ``max_queue`` more wait (an `Admission`), as
for every HTTP upstream.

The models are the backend's ``models``, or, when it lists none, every
Bedrock model of the hosted catalog (``discovery/data/api_models.yaml``),
with the catalog's context window and prices where it lists the model (a
cross-region inference profile, ``us.anthropic...``, is priced as its
model). Nothing is loaded: `load` only checks that the model is one of this
backend's.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import AsyncGenerator
from dataclasses import replace
from typing import Protocol
from urllib.parse import quote

import aiohttp
import yarl

from modelyard.backends.admission import Admission
from modelyard.backends.bedrock.converse_answer import converse_piece
from modelyard.backends.bedrock.converse_request import converse_body
from modelyard.backends.bedrock.converse_stream import EVENT_STREAM, ConverseStreamReader
from modelyard.backends.bedrock.failures import raise_for_response
from modelyard.backends.bedrock.signing import RequestSigner
from modelyard.backends.content_parts import image_count, with_images
from modelyard.backends.engine import EngineHealth, Piece
from modelyard.backends.openai_compat.upstream import describe
from modelyard.catalog_ids import catalog_id
from modelyard.hosted_catalog import load_catalog
from modelyard_client.errors import (
    BackendUnavailable,
    CatalogFileError,
    ModelNotFound,
    ModelyardError,
    ProviderProtocolError,
    StreamTruncated,
)
from modelyard_client.scrub import scrub
from modelyard_client.v1 import common_pb2

log = logging.getLogger(__name__)

# What this engine does with a Bedrock model (images as ImageBlocks, tools as toolConfig).
SERVED_CAPABILITIES = frozenset(
    {
        common_pb2.CAPABILITY_CHAT,
        common_pb2.CAPABILITY_TOOLS,
        common_pb2.CAPABILITY_VISION,
        common_pb2.CAPABILITY_TEXT_GENERATION,
        common_pb2.CAPABILITY_STREAMING,
        common_pb2.CAPABILITY_JSON_OUTPUT,
        common_pb2.CAPABILITY_CODE,
        common_pb2.CAPABILITY_REASONING,
    }
)
# Cross-region inference profiles prefix the model id with a geography.
_PROFILE_PREFIX = re.compile(r"^(?:us|eu|apac|jp|au|ca|us-gov|global)\.")


def default_endpoint(region: str) -> str:
    return f"https://bedrock-runtime.{region}.amazonaws.com"


class BedrockSettings(Protocol):
    """What the engine reads of its backend's configuration (`config.BedrockBackend`,
    which the assembly passes; a protocol, so that backends import no configuration)."""

    @property
    def region(self) -> str: ...
    @property
    def profile(self) -> str | None: ...
    @property
    def endpoint(self) -> str | None: ...
    @property
    def models(self) -> tuple[str, ...]: ...
    @property
    def non_streaming_models(self) -> tuple[str, ...]: ...
    @property
    def timeout_ms(self) -> int: ...
    @property
    def max_concurrency(self) -> int: ...
    @property
    def max_queue(self) -> int: ...


class BedrockEngine:
    kind = "bedrock"
    takes_tools = True  # toolConfig and tool turns (converse_tools.py)

    def __init__(
        self, name: str, backend: BedrockSettings, *, connect_timeout_s: float = 5.0
    ) -> None:
        """`connect_timeout_s`: for a call's TCP and TLS connection
        (`gateway.timeouts.connect_timeout_ms`); ``timeout_ms`` bounds each read after."""
        self._name = name
        self._config = backend
        self._endpoint = (backend.endpoint or default_endpoint(backend.region)).rstrip("/")
        self._connect_timeout_s = connect_timeout_s
        self._signer = RequestSigner(name, backend.region, backend.profile)
        self._session: aiohttp.ClientSession | None = None
        self._entries: dict[str, common_pb2.ModelEntry] = {}  # catalog id -> entry
        self._health = EngineHealth(common_pb2.HEALTH_STATUS_UNSPECIFIED, "not started")
        self.admission = Admission.for_upstream(name, backend.max_concurrency, backend.max_queue)

    @property
    def backend(self) -> str:
        return self._name

    @property
    def endpoint(self) -> str:
        return self._endpoint

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._config.max_concurrency, keepalive_timeout=60
                )
            )
        return self._session

    async def start(self) -> None:
        self._http()
        self._entries = {e.id: e for e in self._catalog_entries()}
        try:
            await self._signer.resolve()
        except ModelyardError as exc:
            # Still served: credentials may appear later (a role attached, a file written).
            self._health = EngineHealth(common_pb2.HEALTH_STATUS_UNHEALTHY, exc.message)
            log.warning("%s: %s", self._name, exc.message)
            return
        self._health = EngineHealth(common_pb2.HEALTH_STATUS_HEALTHY)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _catalog_entries(self) -> list[common_pb2.ModelEntry]:
        try:
            provider = load_catalog().providers.get("bedrock")
        except CatalogFileError as exc:
            log.warning("%s: the hosted catalog is unreadable: %s", self._name, exc)
            provider = None
        listed = {e.name: e for e in provider.entries} if provider is not None else {}
        names = list(self._config.models) or sorted(listed)
        return [
            self._entry(n, listed.get(n) or listed.get(_PROFILE_PREFIX.sub("", n))) for n in names
        ]

    def _entry(self, name: str, listed: common_pb2.ModelEntry | None) -> common_pb2.ModelEntry:
        entry = common_pb2.ModelEntry(
            id=catalog_id(self._name, name),
            name=name,
            provider=self._name,
            capabilities=[common_pb2.CAPABILITY_CHAT, common_pb2.CAPABILITY_STREAMING],
            input_modalities=[common_pb2.MODALITY_TEXT],
            output_modalities=[common_pb2.MODALITY_TEXT],
        )
        if listed is not None:
            served = [c for c in listed.capabilities if c in SERVED_CAPABILITIES]
            entry.capabilities[:] = sorted(set(served) | set(entry.capabilities))
            entry.context_window = listed.context_window
            entry.cost.CopyFrom(listed.cost)
            entry.metadata.update(listed.metadata)
        entry.metadata["region"] = self._config.region
        entry.metadata["endpoint"] = scrub(self._endpoint)
        return entry

    def models(self) -> list[common_pb2.ModelEntry]:
        return [self._entries[i] for i in sorted(self._entries)]

    def loaded_models(self) -> list[str]:
        return sorted(self._entries)

    def health(self) -> EngineHealth:
        return self._health

    async def load(self, model_id: str) -> float:
        """Check the model is this backend's: Bedrock models are served remotely."""
        started = time.perf_counter()
        self._model(model_id)
        return (time.perf_counter() - started) * 1000

    async def unload(self, model_id: str) -> bool:
        self._model(model_id)
        return False  # served remotely: never held in this process

    def serves(self, model_id: str) -> bool:
        return model_id in self._entries or model_id.startswith(f"{self._name}/")

    def _model(self, model_id: str) -> str:
        """The Bedrock model id (or inference profile, or ARN) of a catalog id."""
        entry = self._entries.get(model_id)
        if entry is not None:
            return entry.name
        prefix = f"{self._name}/"
        if model_id.startswith(prefix) and len(model_id) > len(prefix):
            return model_id[len(prefix) :]
        raise ModelNotFound(model_id, f"the '{self._name}' backend")

    # ---- generation -----------------------------------------------------------

    async def infer_stream(
        self,
        model_id: str,
        model_input: common_pb2.Input,
        params: common_pb2.GenerationParams,
    ) -> AsyncGenerator[Piece, None]:
        model = self._model(model_id)
        request = converse_body(model, model_input, params)
        data = json.dumps(request.body).encode()
        images = image_count(model_input)
        unary = model in self._config.non_streaming_models
        call, accept = (
            ("converse", "application/json") if unary else ("converse-stream", EVENT_STREAM)
        )
        url = f"{self._endpoint}/model/{quote(model, safe='')}/{call}"
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=self._connect_timeout_s,
            sock_read=self._config.timeout_ms / 1000,
        )
        streamed = False
        async with self.admission.slot():
            headers = await self._signer.headers(url, data, accept)
            try:
                # encoded=True: sent as signed, not re-quoted (yarl would turn %3A into ':').
                async with self._http().post(
                    yarl.URL(url, encoded=True), data=data, headers=headers, timeout=timeout
                ) as resp:
                    if resp.status != 200:
                        await raise_for_response(self._name, model_id, resp)
                    if unary:
                        piece = converse_piece(self._name, model_id, await resp.read())
                        streamed = True
                        yield _finished(piece, images, request.dropped)
                        return
                    if resp.content_type != EVENT_STREAM:
                        raise ProviderProtocolError(
                            f"Bedrock backend '{self._name}' answered '{model_id}' with "
                            f"{resp.content_type or 'no content type'}, not {EVENT_STREAM}"
                        )
                    reader = ConverseStreamReader(self._name, model_id)
                    async for piece in reader.pieces(resp.content.iter_any()):
                        streamed = True
                        yield _finished(piece, images, request.dropped)
            except (aiohttp.ClientError, TimeoutError) as exc:
                if streamed or isinstance(exc, aiohttp.ClientPayloadError):
                    raise StreamTruncated(
                        f"Bedrock backend '{self._name}' broke off the stream for "
                        f"'{model_id}' ({describe(exc)}): the answer is truncated"
                    ) from exc
                raise BackendUnavailable(
                    f"Bedrock backend '{self._name}' at {scrub(self._endpoint)} is "
                    f"unreachable: {describe(exc)}"
                ) from exc


def _finished(piece: Piece, images: int, dropped: tuple[str, ...]) -> Piece:
    """`piece`, the last one with the images read and the parameters left out."""
    if dropped and piece.finish_reason:
        piece = replace(piece, dropped_params=dropped)
    return with_images(piece, images)
