"""Claude models through Anthropic's Messages API, streamed.

The models served are the backend's `models` when configured, else every
model ``GET /v1/models`` lists for the key at start (as the OpenAI-wire
hosted kinds do); a model id found later (``<backend>/<model>``) is served
too. Their prices come from the hosted catalog (``api_models.yaml``, kind
``anthropic``), which the registry's ``api`` discovery source lists for a
backend with a key; the engine announces what it serves.

One aiohttp session (one connection pool) per engine, opened in `start` (or
by a call before it) and closed in `close`; at most `max_concurrency` calls run at once and
`max_queue` more wait (an `Admission`), others are refused with `Overloaded`
before anything is sent. The body is built, and refused when the API cannot
take it, before a slot is taken (`request.messages_body`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator

import aiohttp

from modelyard.backends.admission import Admission
from modelyard.backends.anthropic.request import messages_body
from modelyard.backends.anthropic.stream import MessageStream
from modelyard.backends.anthropic.upstream import error_of_response, list_models, request_headers
from modelyard.backends.catalog_prices import catalog_listing, with_catalog_figures
from modelyard.backends.content_parts import image_count, with_images
from modelyard.backends.engine import EngineHealth, Piece
from modelyard.backends.openai_compat.providers import ProviderEndpoint
from modelyard.backends.openai_compat.upstream import describe, unreachable
from modelyard.backends.speech.unsupported_params import with_dropped
from modelyard.catalog_ids import catalog_id
from modelyard_client.errors import ModelNotFound, ModelyardError, StreamTruncated
from modelyard_client.scrub import scrub
from modelyard_client.v1 import common_pb2

log = logging.getLogger(__name__)

CATALOG_KIND = "anthropic"  # its models' entry in the hosted catalog
# Connections beyond the call slots, for the model list (start, load).
CONTROL_CONNECTIONS = 4
LIST_TIMEOUT = aiohttp.ClientTimeout(total=10)


class AnthropicEngine:
    kind = "anthropic"
    takes_tools = True  # tools, tool choice and tool turns on the Messages API (tools.py)

    def __init__(self, endpoint: ProviderEndpoint, connect_timeout_s: float = 5.0) -> None:
        """`endpoint.base_url` ends in ``/v1``; `connect_timeout_s` bounds a call's TCP
        (and TLS) connection (`gateway.timeouts.connect_timeout_ms`)."""
        self._endpoint = endpoint
        self._connect_timeout_s = connect_timeout_s
        self._session: aiohttp.ClientSession | None = None
        self._names: dict[str, str] = {}  # catalog id -> the API's model id
        self._windows: dict[str, int] = {}  # catalog id -> max_input_tokens, when listed
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
                    limit=self._endpoint.max_concurrency + CONTROL_CONNECTIONS,
                    keepalive_timeout=60,
                )
            )
        return self._session

    async def start(self) -> None:
        http = self._http()  # the engine's one connection pool, from now until `close`
        names = list(self._endpoint.models)
        if not names:
            try:
                listed = await list_models(http, self._endpoint, LIST_TIMEOUT)
            except ModelyardError as exc:
                self._health = EngineHealth(common_pb2.HEALTH_STATUS_UNHEALTHY, exc.message)
                log.warning("%s: %s", self._endpoint.name, exc.message)
                return
            names = [m["id"] for m in listed]
            self._windows = {
                catalog_id(self._endpoint.name, m["id"]): _window(m.get("max_input_tokens"))
                for m in listed
            }
        self._names = {catalog_id(self._endpoint.name, n): n for n in names}
        self._listed = catalog_listing(CATALOG_KIND, self._endpoint.name)
        self._health = EngineHealth(common_pb2.HEALTH_STATUS_HEALTHY)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def models(self) -> list[common_pb2.ModelEntry]:
        """What is served, with the catalog's prices (`catalog_prices`): the API's listed
        context window wins over the catalog's."""
        return [
            with_catalog_figures(self._entry(model_id, name), self._listed.get(name))
            for model_id, name in sorted(self._names.items())
        ]

    def _entry(self, model_id: str, name: str) -> common_pb2.ModelEntry:
        return common_pb2.ModelEntry(
            id=model_id,
            name=name,
            provider=self._endpoint.name,
            # Every Claude model the Messages API serves calls tools.
            capabilities=[
                common_pb2.CAPABILITY_CHAT,
                common_pb2.CAPABILITY_STREAMING,
                common_pb2.CAPABILITY_TOOLS,
            ],
            input_modalities=[common_pb2.MODALITY_TEXT],
            output_modalities=[common_pb2.MODALITY_TEXT],
            context_window=self._windows.get(model_id, 0),
            metadata={"base_url": scrub(self._endpoint.base_url)},
        )

    def loaded_models(self) -> list[str]:
        return sorted(self._names)

    def health(self) -> EngineHealth:
        return self._health

    def serves(self, model_id: str) -> bool:
        return model_id in self._names or model_id.startswith(f"{self._endpoint.name}/")

    async def load(self, model_id: str) -> float:
        """Check the API still offers the model to this key (nothing to load remotely)."""
        started = time.perf_counter()
        name = self._upstream_name(model_id)
        listed = await list_models(self._http(), self._endpoint, LIST_TIMEOUT)
        if name not in {m["id"] for m in listed}:
            raise ModelNotFound(model_id, f"upstream '{self._endpoint.name}'")
        return (time.perf_counter() - started) * 1000

    async def unload(self, model_id: str) -> bool:
        self._upstream_name(model_id)
        return False  # served remotely: never held in this process

    def _upstream_name(self, model_id: str) -> str:
        name = self._names.get(model_id)
        if name is not None:
            return name
        prefix = f"{self._endpoint.name}/"
        if model_id.startswith(prefix) and len(model_id) > len(prefix):
            return model_id[len(prefix) :]
        raise ModelNotFound(model_id, f"the '{self._endpoint.name}' backend")

    async def infer_stream(
        self,
        model_id: str,
        model_input: common_pb2.Input,
        params: common_pb2.GenerationParams,
    ) -> AsyncGenerator[Piece, None]:
        body, dropped = messages_body(
            self._upstream_name(model_id),
            model_input,
            params,
            model_id=model_id,
            provider=self._endpoint.name,
        )
        images = image_count(model_input)
        url = f"{self._endpoint.base_url}/messages"
        # sock_connect, not connect: a wait for a pooled connection is not the upstream's fault.
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self._connect_timeout_s, sock_read=self._endpoint.timeout_s
        )
        streamed = False
        async with self.admission.slot():
            try:
                async with self._http().post(
                    url, json=body, timeout=timeout, headers=request_headers(self._endpoint)
                ) as resp:
                    if resp.status != 200:
                        raise await error_of_response(self._endpoint, resp, model=model_id)
                    stream = MessageStream(self._endpoint.name, model_id)
                    async for piece in stream.pieces(resp.content.iter_any()):
                        streamed = True
                        yield with_dropped(with_images(piece, images), dropped)
            except (aiohttp.ClientError, TimeoutError) as exc:
                if streamed or isinstance(exc, aiohttp.ClientPayloadError):
                    # Part of the answer is out: the caller holds a truncated answer.
                    raise StreamTruncated(
                        f"upstream '{self._endpoint.name}' broke off the stream for "
                        f"'{model_id}' ({describe(exc)}): the answer is truncated"
                    ) from exc
                raise unreachable(self._endpoint, exc) from exc


def _window(value: object) -> int:
    """A listed ``max_input_tokens`` as a catalog context window (0: not known)."""
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        return 0
    return min(value, 2**32 - 1)
