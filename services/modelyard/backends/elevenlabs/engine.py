"""ElevenLabs text to speech (``POST <base_url>/v1/text-to-speech/{voice}/stream``) as an engine.

One aiohttp session (one connection pool) per engine, opened on first use
and closed in `close`, as the other hosted engines do. The key goes in
``xi-api-key``, read on each call (`upstream.request_headers`). At most
`max_concurrency` calls run against ElevenLabs at once and `max_queue` more
wait (`Admission`); a call beyond both is refused with `Overloaded` before
anything is sent, as is a request ElevenLabs cannot take
(`request.speech_request`). ElevenLabs' failures become the errors
`upstream` names; the audio is read by `speech_stream`.

Models: the backend's `models`, else the text-to-speech models of the hosted
catalog (discovery/data/api_models.yaml, kind ``elevenlabs``), which also
prices them and gives each its character limit (``context_window`` with
``input_unit: character``), checked before the call. A hosted model has
nothing to load: `load` only checks the id is one this engine serves.
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from collections.abc import AsyncGenerator

import aiohttp

from modelyard.backends.admission import Admission
from modelyard.backends.catalog_prices import catalog_listing, with_catalog_figures
from modelyard.backends.elevenlabs.request import speech_request
from modelyard.backends.elevenlabs.speech_stream import SpeechStream
from modelyard.backends.elevenlabs.upstream import error_of_response, request_headers
from modelyard.backends.engine import EngineHealth, Piece
from modelyard.backends.openai_compat.providers import ProviderEndpoint
from modelyard.backends.openai_compat.upstream import describe, unreachable
from modelyard.catalog_ids import catalog_id
from modelyard.hosted_catalog import load_catalog
from modelyard_client.errors import CatalogFileError, ModelNotFound, StreamTruncated
from modelyard_client.scrub import scrub
from modelyard_client.v1 import common_pb2

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.elevenlabs.io"
CATALOG_KIND = "elevenlabs"  # its models' entry in the hosted catalog
CAPABILITIES = (common_pb2.CAPABILITY_TEXT_TO_SPEECH, common_pb2.CAPABILITY_STREAMING)


def catalog_speech_models() -> dict[str, int]:
    """The hosted catalog's ElevenLabs text-to-speech models and their character limits
    (0: not stated); its speech-to-text models are left out."""
    provider = load_catalog().providers.get(CATALOG_KIND)
    if provider is None:
        return {}
    return {
        e.name: e.context_window if e.metadata.get("input_unit") == "character" else 0
        for e in provider.entries
        if common_pb2.CAPABILITY_TEXT_TO_SPEECH in e.capabilities
    }


class ElevenLabsEngine:
    kind = "elevenlabs"

    def __init__(self, endpoint: ProviderEndpoint, connect_timeout_s: float = 5.0) -> None:
        """`endpoint.base_url` ends in ``/v1``; `connect_timeout_s` bounds a call's TCP
        (and TLS) connection (`gateway.timeouts.connect_timeout_ms`)."""
        self._endpoint = endpoint
        self._connect_timeout_s = connect_timeout_s
        self._session: aiohttp.ClientSession | None = None
        self._names: dict[str, str] = {}  # catalog id -> ElevenLabs model_id
        self._limits: dict[str, int] = {}  # catalog id -> characters per request, when known
        self._listed: dict[str, common_pb2.ModelEntry] = {}  # the catalog's, by name
        self._health = EngineHealth(common_pb2.HEALTH_STATUS_UNSPECIFIED, "not started")
        name = endpoint.name
        self.admission = Admission.for_upstream(name, endpoint.max_concurrency, endpoint.max_queue)

    @property
    def endpoint(self) -> ProviderEndpoint:
        return self._endpoint

    @property
    def backend(self) -> str:
        return self._endpoint.name

    def _http(self) -> aiohttp.ClientSession:
        # No key in the session's headers: each request sends the one current then.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._endpoint.max_concurrency, keepalive_timeout=60
                )
            )
        return self._session

    async def start(self) -> None:
        try:
            limits = catalog_speech_models()
        except CatalogFileError as exc:
            self._health = EngineHealth(common_pb2.HEALTH_STATUS_UNHEALTHY, exc.message)
            log.warning("%s: %s", self._endpoint.name, exc.message)
            return
        names = list(self._endpoint.models) or list(limits)
        self._names = {catalog_id(self._endpoint.name, n): n for n in names}
        self._limits = {
            model_id: limits[name] for model_id, name in self._names.items() if limits.get(name)
        }
        self._listed = catalog_listing(CATALOG_KIND, self._endpoint.name)
        self._http()
        self._health = EngineHealth(common_pb2.HEALTH_STATUS_HEALTHY)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def models(self) -> list[common_pb2.ModelEntry]:
        """What is served, priced per character from the catalog (`catalog_prices`)."""
        return [
            with_catalog_figures(
                common_pb2.ModelEntry(
                    id=model_id,
                    name=name,
                    provider=self._endpoint.name,
                    capabilities=CAPABILITIES,
                    input_modalities=[common_pb2.MODALITY_TEXT],
                    output_modalities=[common_pb2.MODALITY_AUDIO],
                    context_window=self._limits.get(model_id, 0),
                    metadata={
                        "base_url": scrub(self._endpoint.base_url),
                        "input_unit": "character",
                    },
                ),
                self._listed.get(name),
            )
            for model_id, name in sorted(self._names.items())
        ]

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
            raise ModelNotFound(model_id, f"the '{self._endpoint.name}' backend")
        return name

    async def infer_stream(
        self,
        model_id: str,
        model_input: common_pb2.Input,
        params: common_pb2.GenerationParams,
    ) -> AsyncGenerator[Piece, None]:
        name = self._upstream_name(model_id)
        limit = self._limits.get(model_id, 0)
        request = speech_request(name, model_id, model_input, params, limit)
        voice = urllib.parse.quote(request.voice, safe="")
        url = f"{self._endpoint.base_url}/text-to-speech/{voice}/stream"
        # sock_connect, not connect: a wait for a pooled connection is not the upstream's fault.
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self._connect_timeout_s, sock_read=self._endpoint.timeout_s
        )
        answered = False  # a 200 came: the audio has begun
        async with self.admission.slot():
            try:
                async with self._http().post(
                    url,
                    params={"output_format": request.output_format},
                    json=request.body,
                    timeout=timeout,
                    headers=request_headers(self._endpoint),
                ) as resp:
                    if resp.status != 200:
                        raise await error_of_response(self._endpoint, resp)
                    answered = True
                    stream = SpeechStream(self._endpoint.name, model_id, request)
                    async for piece in stream.pieces(resp.content.iter_any()):
                        yield piece
            except (aiohttp.ClientError, TimeoutError) as exc:
                if answered or isinstance(exc, aiohttp.ClientPayloadError):
                    # The audio had begun: what the caller holds, or will, is cut short.
                    raise StreamTruncated(
                        f"upstream '{self._endpoint.name}' broke off the audio for "
                        f"'{model_id}' ({describe(exc)}): the speech is truncated"
                    ) from exc
                raise unreachable(self._endpoint, exc) from exc
