"""The native Ollama engine: chat, load and unload through the official `ollama` client.

Generation is ``POST /api/chat`` streamed, or ``POST /api/generate`` for text
input without tools (`chat_request` builds both, `answer` reads both); the model
stays loaded ``keep_alive`` seconds after each call
(``backends.<name>.keep_alive``). `load` is a chat without messages and with
that ``keep_alive``, which Ollama answers ``done_reason: "load"`` once the
model is in memory; `unload` the same with ``keep_alive: 0``, answered
``"unload"`` (docs/api.md of ollama/ollama, "Load a model", "Unload a
model"). What is loaded is what ``GET /api/ps`` says, asked at start, after
each load, unload and generation, and when `loaded_models` finds its copy
older than `LOADED_MAX_AGE_S` (the daemon unloads models itself when their
keep_alive runs out).

The catalog entries are discovery's too (`model_entry.ollama_entry`):
``/api/tags`` for what is pulled, ``/api/show`` for the capabilities and the
context length (``model_info["<architecture>.context_length"]``), so the
engine's announcement and discovery describe a model alike. The backend's
``models`` are served whether pulled or not (a call for one not pulled is
`ModelNotFound` then); with ``discover`` (the default) every pulled model too.

The official client speaks httpx, not aiohttp (the other engines' choice):
it is the client Ollama maintains, and discovery already uses it. One
`ollama.AsyncClient` per engine, opened in `start` and closed in `close`,
holds one connection pool sized like the OpenAI-wire engine's; at most
``max_concurrency`` generations run at once and ``max_queue`` more wait, as
there (`modelyard.backends.admission`). Failures: `failures`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar

import httpx
import ollama

from modelyard.backends.admission import Admission
from modelyard.backends.content_parts import image_count, with_images
from modelyard.backends.engine import Embeddings, EngineHealth, Piece
from modelyard.backends.ollama.answer import answer_pieces
from modelyard.backends.ollama.chat_request import (
    chat_request,
    generate_request,
    uses_generate,
)
from modelyard.backends.ollama.failures import (
    MALFORMED_ANSWERS,
    TRANSPORT_ERRORS,
    from_response_error,
    malformed,
    raise_for_status,
    transport,
    unreachable,
)
from modelyard.backends.ollama.model_entry import ollama_entry
from modelyard.catalog_ids import catalog_id
from modelyard_client.errors import (
    ModelNotFound,
    ModelyardError,
    ProviderProtocolError,
    StreamTruncated,
)
from modelyard_client.v1 import common_pb2

log = logging.getLogger(__name__)

T = TypeVar("T")

# Connections beyond the generation slots, for /api/ps, /api/show, load and unload.
CONTROL_CONNECTIONS = 4
# How old the copy of /api/ps may be before `loaded_models` asks again.
LOADED_MAX_AGE_S = 5.0


class OllamaEngine:
    kind = "ollama"
    takes_tools = True  # tools and tool turns on /api/chat (`tools`)

    def __init__(
        self,
        backend: str,
        endpoint: str,
        *,
        models: Sequence[str] = (),
        discover: bool = True,
        keep_alive_s: float = 300.0,
        timeout_s: float = 30.0,
        connect_timeout_s: float = 5.0,
        max_concurrency: int = 256,
        max_queue: int = 512,
    ) -> None:
        """`timeout_s`: the longest the daemon may stay silent in a call
        (``backends.<name>.timeout_ms``); `connect_timeout_s`: for its TCP connection
        (``gateway.timeouts.connect_timeout_ms``)."""
        self._backend = backend
        self._endpoint = endpoint.rstrip("/")
        self._configured = tuple(models)
        self._discover = discover
        self._keep_alive_s = keep_alive_s
        self._timeout = httpx.Timeout(timeout_s, connect=connect_timeout_s, pool=None)
        self._pool = httpx.Limits(
            max_connections=max_concurrency + CONTROL_CONNECTIONS,
            max_keepalive_connections=max_concurrency + CONTROL_CONNECTIONS,
            keepalive_expiry=60,
        )
        self._where = f"ollama '{backend}'"
        self._client: ollama.AsyncClient | None = None
        self._entries: dict[str, common_pb2.ModelEntry] = {}  # catalog id -> entry
        self._loaded: frozenset[str] = frozenset()  # catalog ids /api/ps listed
        self._loaded_at = -LOADED_MAX_AGE_S
        self._refresh: asyncio.Task[None] | None = None
        self._health = EngineHealth(common_pb2.HEALTH_STATUS_UNSPECIFIED, "not started")
        self.admission = Admission.for_upstream(backend, max_concurrency, max_queue)

    @property
    def backend(self) -> str:
        return self._backend

    @property
    def endpoint(self) -> str:
        return self._endpoint

    def _ollama(self) -> ollama.AsyncClient:
        if self._client is None:
            self._client = ollama.AsyncClient(
                host=self._endpoint,
                timeout=self._timeout,
                limits=self._pool,
                # The client keeps no headers on its ResponseError: map a failed status
                # here, where Retry-After is still at hand.
                event_hooks={"response": [raise_for_status(self._backend, self._where)]},
            )
        return self._client

    # ---- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        try:
            self._entries = await self._describe()
        except ModelyardError as exc:
            self._entries = {
                catalog_id(self._backend, n): _plain(self, n) for n in self._configured
            }
            self._health = EngineHealth(common_pb2.HEALTH_STATUS_UNHEALTHY, exc.message)
            log.warning("%s: %s", self._backend, exc.message)
            return
        await self._refresh_quietly()  # only the load state depends on it, as in discovery
        self._health = EngineHealth(common_pb2.HEALTH_STATUS_HEALTHY)

    async def close(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
            await asyncio.gather(self._refresh, return_exceptions=True)
            self._refresh = None
        if self._client is not None:
            await self._client.close()  # type: ignore[no-untyped-call]
            self._client = None

    async def _describe(self) -> dict[str, common_pb2.ModelEntry]:
        """The entries of the models served: configured ones, and pulled ones with `discover`."""
        client = self._ollama()
        listing = await self._control(client.list(), "")
        pulled = {str(m.model): m for m in listing.models if m.model}
        names = list(self._configured)
        if self._discover:
            names += sorted(n for n in pulled if n not in names)
        entries = {}
        for name in names:
            model_id = catalog_id(self._backend, name)
            try:
                show = await self._control(client.show(name), model_id)
            except ModelNotFound:
                log.warning("%s: model '%s' is configured but not pulled", self._backend, name)
                entries[model_id] = _plain(self, name)
                continue
            listed = pulled.get(name) or ollama.ListResponse.Model(model=name)
            entries[model_id] = ollama_entry(
                listed, show, None, host=self._endpoint, backend=self._backend
            )
        return entries

    def models(self) -> list[common_pb2.ModelEntry]:
        out = []
        for model_id, found in sorted(self._entries.items()):
            entry = common_pb2.ModelEntry()
            entry.CopyFrom(found)
            entry.metadata["loaded"] = "true" if model_id in self._loaded else "false"
            out.append(entry)
        return out

    def serves(self, model_id: str) -> bool:
        return model_id in self._entries or model_id.startswith(f"{self._backend}/")

    def health(self) -> EngineHealth:
        return self._health

    def _model_name(self, model_id: str) -> str:
        """The daemon's name of a served model (``gemma3:4b`` for ``ollama/gemma3:4b``)."""
        prefix = f"{self._backend}/"
        if model_id.startswith(prefix) and len(model_id) > len(prefix):
            return model_id[len(prefix) :]
        raise ModelNotFound(model_id, f"the '{self._backend}' backend")

    # ---- what is loaded: /api/ps ------------------------------------------------

    def loaded_models(self) -> list[str]:
        """What /api/ps said last; asked again in the background once that is stale."""
        stale = time.monotonic() - self._loaded_at > LOADED_MAX_AGE_S
        if stale and self._client is not None and (self._refresh is None or self._refresh.done()):
            self._refresh = asyncio.get_running_loop().create_task(self._refresh_quietly())
        return sorted(self._loaded)

    async def _refresh_loaded(self) -> None:
        running = await self._control(self._ollama().ps(), "")
        self._loaded = frozenset(
            catalog_id(self._backend, str(m.model)) for m in running.models if m.model
        )
        self._loaded_at = time.monotonic()

    async def _refresh_quietly(self) -> None:
        try:
            await self._refresh_loaded()
        except ModelyardError as exc:
            log.warning("%s: /api/ps failed, load state unknown: %s", self._backend, exc.message)

    async def load(self, model_id: str) -> float:
        """Load the model for ``keep_alive`` seconds; the milliseconds the daemon took."""
        started = time.perf_counter()
        await self._lifecycle(model_id, self._keep_alive_s, "load")
        took = (time.perf_counter() - started) * 1000
        await self._refresh_loaded()
        return took

    async def unload(self, model_id: str) -> bool:
        """Unload the model at once (``keep_alive: 0``); whether /api/ps listed it loaded."""
        await self._refresh_loaded()
        was = model_id in self._loaded
        await self._lifecycle(model_id, 0, "unload")
        await self._refresh_loaded()
        return was

    async def _lifecycle(self, model_id: str, keep_alive_s: float, expected: str) -> None:
        name = self._model_name(model_id)
        answer = await self._control(
            self._ollama().chat(model=name, messages=[], keep_alive=keep_alive_s), model_id
        )
        if not answer.done or answer.done_reason != expected:
            raise ProviderProtocolError(
                f"{self._where} answered the {expected} of '{model_id}' with done="
                f"{answer.done!r}, done_reason={answer.done_reason!r}, not {expected!r}"
            )

    async def _control(self, call: Awaitable[T], model_id: str) -> T:
        """A call that is not a generation, its failures mapped as a generation's are."""
        try:
            return await call
        except ollama.ResponseError as exc:
            raise from_response_error(exc, where=self._where, model_id=model_id) from exc
        except MALFORMED_ANSWERS as exc:
            raise malformed(self._where, model_id or "the model list", exc) from exc
        except TRANSPORT_ERRORS as exc:
            raise unreachable(self._where, self._endpoint, exc) from exc

    # ---- embeddings -----------------------------------------------------------

    async def embed(self, model_id: str, inputs: Sequence[str], dimensions: int) -> Embeddings:
        """``POST /api/embed`` (docs.ollama.com/api/embed: ``input`` a list, ``dimensions``,
        ``keep_alive``; answered ``embeddings`` and ``prompt_eval_count``) through the
        client, in a generation slot; its failures mapped as every call's (`_control`)."""
        name = self._model_name(model_id)
        async with self.admission.slot():
            answer = await self._control(
                self._ollama().embed(
                    model=name,
                    input=list(inputs),
                    dimensions=dimensions or None,
                    keep_alive=self._keep_alive_s,
                ),
                model_id,
            )
        self._loaded |= {model_id}  # the daemon keeps it for keep_alive after the call
        vectors = [[float(v) for v in vector] for vector in answer.embeddings]
        return Embeddings(vectors, answer.prompt_eval_count or 0)

    # ---- generation -----------------------------------------------------------

    async def infer_stream(
        self,
        model_id: str,
        model_input: common_pb2.Input,
        params: common_pb2.GenerationParams,
    ) -> AsyncGenerator[Piece, None]:
        name = self._model_name(model_id)
        answer = self._completion if uses_generate(model_input, params) else self._chat
        call, dropped = answer(name, model_id, model_input, params)
        images = image_count(model_input)
        streamed = False
        async with self.admission.slot():
            try:
                lines = await call()
                # Closed here, not by the garbage collector: an abandoned answer's
                # connection is dropped at once, and the daemon stops generating.
                async with (
                    contextlib.aclosing(_closable(lines)) as owned,
                    contextlib.aclosing(
                        answer_pieces(owned, where=self._where, model_id=model_id, dropped=dropped)
                    ) as pieces,
                ):
                    async for piece in pieces:
                        streamed = True
                        yield with_images(piece, images)
            except ollama.ResponseError as exc:
                raise from_response_error(exc, where=self._where, model_id=model_id) from exc
            except MALFORMED_ANSWERS as exc:
                raise malformed(self._where, model_id, exc) from exc
            except TRANSPORT_ERRORS as exc:
                if streamed:
                    # Part of the answer is out: the caller holds a truncated answer,
                    # not a failed call it could simply retry.
                    raise StreamTruncated(
                        f"{self._where} broke off the stream for '{model_id}' "
                        f"({transport(exc)}): the answer is truncated"
                    ) from exc
                raise unreachable(self._where, self._endpoint, exc) from exc
        self._loaded |= {model_id}  # the daemon keeps it for keep_alive after the call

    def _chat(
        self,
        name: str,
        model_id: str,
        model_input: common_pb2.Input,
        params: common_pb2.GenerationParams,
    ) -> tuple[Callable[[], Awaitable[Lines]], tuple[str, ...]]:
        """The ``/api/chat`` call (made once a slot is held) and the parameters dropped;
        `InvalidRequest` now, before any slot, for what Ollama cannot take."""
        request = chat_request(
            model_input,
            params,
            keep_alive=self._keep_alive_s,
            backend=self._backend,
            model=model_id,
        )

        async def call() -> Lines:
            return await self._ollama().chat(
                model=name,
                messages=request.messages,
                tools=request.tools,
                options=request.options or None,
                format=request.format,
                keep_alive=request.keep_alive,
                stream=True,
            )

        return call, request.dropped

    def _completion(
        self,
        name: str,
        model_id: str,
        model_input: common_pb2.Input,
        params: common_pb2.GenerationParams,
    ) -> tuple[Callable[[], Awaitable[Lines]], tuple[str, ...]]:
        """The ``/api/generate`` call of text input, as `_chat`."""
        request = generate_request(
            model_input,
            params,
            keep_alive=self._keep_alive_s,
            backend=self._backend,
            model=model_id,
        )

        async def call() -> Lines:
            return await self._ollama().generate(
                model=name,
                prompt=request.prompt,
                options=request.options or None,
                format=request.format,
                keep_alive=request.keep_alive,
                stream=True,
            )

        return call, request.dropped


# A streamed answer's lines, chat or completion.
Lines = AsyncIterator[ollama.ChatResponse | ollama.GenerateResponse]


def _closable(lines: Lines) -> AsyncGenerator[ollama.ChatResponse | ollama.GenerateResponse, None]:
    """The client's answer lines as the async generator they are (typed an iterator)."""
    assert isinstance(lines, AsyncGenerator)
    return lines


def _plain(engine: OllamaEngine, name: str) -> common_pb2.ModelEntry:
    """The entry of a configured model the daemon could not describe (not pulled, down)."""
    return ollama_entry(
        ollama.ListResponse.Model(model=name),
        ollama.ShowResponse(model_info=None),
        None,
        host=engine.endpoint,
        backend=engine.backend,
    )
