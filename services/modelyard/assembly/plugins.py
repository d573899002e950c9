"""Plug-in backends: an installed `BaseProvider` adapted to the `Engine` protocol.

`plugin_engine` finds the entry point a `PluginBackend`'s kind names, checks it
is a `BaseProvider` subclass and builds it; a mistake there is an
`InvalidRequest` naming the backend key and the entry point, before anything
starts. `PluginEngine` then does everything the protocol leaves out of the
plug-in: catalog entries and ids, protobuf in and out, the finish reason,
usage figures, and turning the plug-in's exceptions into modelyard errors.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
from collections.abc import AsyncGenerator, AsyncIterable
from contextlib import aclosing
from importlib.metadata import EntryPoint
from typing import Any

from modelyard.backends.engine import EngineHealth, Piece, chat_messages
from modelyard.catalog_ids import catalog_id
from modelyard.config import PluginBackend
from modelyard.model_input import BYTES_PER_TOKEN, estimate_input_tokens
from modelyard.plugins import (
    ENTRY_POINT_GROUP,
    BaseProvider,
    Finish,
    GenerationParams,
    Message,
    installed_plugins,
)
from modelyard_client.errors import (
    BackendUnavailable,
    InvalidRequest,
    ModelNotFound,
    ModelyardError,
    ProviderError,
    StreamTruncated,
)
from modelyard_client.scrub import upstream_text
from modelyard_client.v1 import common_pb2

log = logging.getLogger(__name__)

# A plug-in's `initialize` may talk to the network; it must not hold up the whole start.
INITIALIZE_TIMEOUT_S = 30.0

_FINISH = {"stop": common_pb2.FINISH_REASON_STOP, "length": common_pb2.FINISH_REASON_LENGTH}
_CAPABILITIES = (
    common_pb2.CAPABILITY_TEXT_GENERATION,
    common_pb2.CAPABILITY_CHAT,
    common_pb2.CAPABILITY_STREAMING,
)


def plugin_engine(name: str, backend: PluginBackend) -> PluginEngine:
    """The engine serving backend `name` with the plug-in its `kind` names."""
    where = f"model_system.backends.{name}"
    installed = installed_plugins()
    point = installed.get(backend.kind)
    if point is None:
        raise InvalidRequest(
            f"{where}.kind: no plug-in '{backend.kind}' is installed "
            f"(entry points in {ENTRY_POINT_GROUP}: {', '.join(sorted(installed)) or 'none'})"
        )
    provider_class = load_provider_class(point, f"{where}.kind")
    try:
        provider = provider_class(name, backend.options, backend.api_key, endpoint=backend.endpoint)
    except Exception as exc:
        raise InvalidRequest(
            f"{where}: plug-in {_describe_point(point)} refused its configuration: {_describe(exc)}"
        ) from exc
    return PluginEngine(name, backend, provider, entry_point=point.value)


def load_provider_class(point: EntryPoint, where: str) -> type[BaseProvider]:
    """The `BaseProvider` subclass entry point `point` names; `where`: the config key."""
    try:
        loaded = point.load()
    except Exception as exc:
        raise InvalidRequest(
            f"{where}: plug-in {_describe_point(point)} could not be loaded: {_describe(exc)}"
        ) from exc
    if not (isinstance(loaded, type) and issubclass(loaded, BaseProvider)):
        raise InvalidRequest(
            f"{where}: plug-in {_describe_point(point)} is {loaded!r}, "
            "not a subclass of modelyard.plugins.BaseProvider"
        )
    return loaded


class PluginEngine:
    """One configured plug-in backend as an `Engine`."""

    def __init__(
        self,
        name: str,
        backend: PluginBackend,
        provider: BaseProvider,
        *,
        entry_point: str = "",
    ) -> None:
        self._name = name
        self._config = backend
        self._provider = provider
        self._entry_point = entry_point or type(provider).__qualname__
        self._names: dict[str, str] = {}  # catalog id -> the provider's model name
        self._health = EngineHealth(common_pb2.HEALTH_STATUS_UNSPECIFIED, "not started")

    @property
    def kind(self) -> str:
        return self._config.kind

    @property
    def backend(self) -> str:
        return self._name

    @property
    def _who(self) -> str:
        return f"plug-in '{self.kind}' ({self._entry_point}) of backend '{self._name}'"

    async def start(self) -> None:
        configured = list(self._config.models)
        try:
            async with asyncio.timeout(INITIALIZE_TIMEOUT_S):
                await self._provider.initialize()
            names = configured or _model_names(self._provider.list_models())
        except Exception as exc:
            why = (
                f"timed out after {INITIALIZE_TIMEOUT_S:g}s"
                if isinstance(exc, TimeoutError)
                else _describe(exc)
            )
            reason = f"{self._who} failed to initialize: {why}"
            log.warning("%s", reason)
            self._health = EngineHealth(common_pb2.HEALTH_STATUS_UNAVAILABLE, reason)
            names = configured  # listed, and marked unavailable with the reason
        else:
            self._health = EngineHealth(common_pb2.HEALTH_STATUS_HEALTHY)
            if not names:
                self._health = EngineHealth(
                    common_pb2.HEALTH_STATUS_DEGRADED,
                    f"{self._who} lists no models (list them under models:)",
                )
        self._names = {catalog_id(self._name, n): n for n in names}

    async def close(self) -> None:
        try:
            await self._provider.close()
        except Exception as exc:
            # Shutdown goes on for the other engines; the plug-in's fault is logged.
            log.warning("%s failed to close: %s", self._who, _describe(exc))

    def models(self) -> list[common_pb2.ModelEntry]:
        entries = []
        for model_id, name in sorted(self._names.items()):
            entry = common_pb2.ModelEntry(
                id=model_id,
                name=name,
                provider=self._name,
                capabilities=_CAPABILITIES,
                input_modalities=[common_pb2.MODALITY_TEXT],
                output_modalities=[common_pb2.MODALITY_TEXT],
                metadata={"plugin": self.kind, "entry_point": self._entry_point},
            )
            if not self._ready():
                # Listed with the reason, so the catalog says why it cannot serve.
                entry.health = self._health.status
                entry.health_reason = self._health.reason
            entries.append(entry)
        return entries

    def serves(self, model_id: str) -> bool:
        return model_id in self._names

    def health(self) -> EngineHealth:
        return self._health

    def loaded_models(self) -> list[str]:
        return sorted(self._names) if self._ready() else []

    async def load(self, model_id: str) -> float:
        self._model_name(model_id)
        return 0.0  # nothing is held in this process

    async def unload(self, model_id: str) -> bool:
        self._model_name(model_id)
        return False

    def _ready(self) -> bool:
        return self._health.status != common_pb2.HEALTH_STATUS_UNAVAILABLE

    def _model_name(self, model_id: str) -> str:
        name = self._names.get(model_id)
        if name is None:
            raise ModelNotFound(model_id, f"the '{self._name}' backend")
        return name

    async def infer_stream(
        self,
        model_id: str,
        model_input: common_pb2.Input,
        params: common_pb2.GenerationParams,
    ) -> AsyncGenerator[Piece, None]:
        name = self._model_name(model_id)
        if not self._ready():
            raise BackendUnavailable(self._health.reason)
        messages = [Message(**m) for m in chat_messages(model_input)]
        text: list[str] = []
        finish = Finish()
        try:
            async with aclosing(self._pieces(name, messages, _plain_params(params))) as pieces:
                async for item in pieces:
                    if isinstance(item, Finish):
                        finish = item
                        break
                    text.append(item)
                    yield Piece(item)
        except ModelyardError:
            raise  # the plug-in chose its error on purpose
        except Exception as exc:
            if text:
                raise StreamTruncated(
                    f"{self._who} failed after part of the answer for '{model_id}': "
                    f"{_describe(exc)}: the answer is truncated"
                ) from exc
            raise ProviderError(f"{self._who} failed for '{model_id}': {_describe(exc)}") from exc
        answer = "".join(text)
        yield Piece(
            "",
            _FINISH.get(finish.reason, common_pb2.FINISH_REASON_STOP),
            input_tokens=_first(
                finish.input_tokens,
                self._counted(name, [m.content for m in messages]),
                estimate_input_tokens(model_input),
            ),
            output_tokens=_first(
                finish.output_tokens,
                self._counted(name, [answer]),
                estimate_text_tokens(answer),
            ),
        )

    async def _pieces(
        self, name: str, messages: list[Message], params: GenerationParams
    ) -> AsyncGenerator[str | Finish, None]:
        """Whatever `generate_text` returned, as text pieces then at most one `Finish`."""
        result: Any = self._provider.generate_text(name, messages, params)
        if inspect.isawaitable(result):
            result = await result
        if isinstance(result, str):
            if result:
                yield result
            return
        if not isinstance(result, AsyncIterable):
            raise TypeError(
                f"generate_text returned {type(result).__name__}; "
                "return a str or an async iterator of str"
            )
        async with aclosing(_as_generator(result)) as items:
            async for item in items:
                if isinstance(item, Finish):
                    yield item
                    return
                if not isinstance(item, str):
                    raise TypeError(
                        f"generate_text yielded {type(item).__name__}; yield str or a Finish"
                    )
                if item:
                    yield item

    def _counted(self, name: str, texts: list[str]) -> int | None:
        """The plug-in's own token count of `texts`, or None when it does not count."""
        try:
            counts = [self._provider.count_tokens(name, t) for t in texts]
            return None if None in counts else sum(int(c or 0) for c in counts)
        except Exception as exc:
            log.warning("%s failed to count tokens: %s", self._who, _describe(exc))
            return None


def estimate_text_tokens(text: str) -> int:
    """The project's estimate (`BYTES_PER_TOKEN`) for text no tokenizer counted."""
    return math.ceil(len(text.encode()) / BYTES_PER_TOKEN)


def _plain_params(params: common_pb2.GenerationParams) -> GenerationParams:
    return GenerationParams(
        max_tokens=params.max_tokens or None,
        temperature=params.temperature if params.HasField("temperature") else None,
        top_p=params.top_p if params.HasField("top_p") else None,
        stop=tuple(params.stop),
        seed=params.seed if params.HasField("seed") else None,
    )


def _model_names(listed: object) -> list[str]:
    if not isinstance(listed, list | tuple) or not all(
        isinstance(n, str) and n.strip() for n in listed
    ):
        raise TypeError(f"list_models returned {listed!r}; return a list of model names")
    return list(dict.fromkeys(listed))


async def _as_generator(items: AsyncIterable[Any]) -> AsyncGenerator[Any, None]:
    # A generator of our own, so `aclosing` also closes a plug-in's plain async iterator.
    iterator = aiter(items)
    try:
        async for item in iterator:
            yield item
    finally:
        close = getattr(iterator, "aclose", None)
        if close is not None:
            await close()


def _first(*counts: int | None) -> int:
    return next(c for c in counts if c is not None)


def _describe_point(point: EntryPoint) -> str:
    dist = getattr(point, "dist", None)
    source = f" from {dist.name} {dist.version}" if dist is not None else ""
    return f"'{point.name}' ({point.value}{source})"


def _describe(exc: BaseException) -> str:
    # A plug-in's exception may quote its upstream: scrubbed and capped like any upstream's.
    text = upstream_text(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
