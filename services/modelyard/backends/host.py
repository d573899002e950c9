"""A backend service's domain: the engines it hosts and the models they serve.

One `BackendHost` serves one backend kind in the split deployment, or every
in-process engine in the embedded default (catalog ids are unique, so a model
id names exactly one engine). It announces its models to the registry with
its own address as the deployment endpoint.

A model load's wall time (an engine that reports it, `BudgetedEngine`) is
written to the model's performance profile in the registry the host announced
to, as `cold_start_ms`, the profile's other figures kept; a load before the
announcement (a preload at start) rides in the announced entry instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Sequence
from typing import Any, Protocol

import grpc

from modelyard.backends.engine import (
    BudgetedEngine,
    EmbeddingEngine,
    Engine,
    Piece,
    takes_tools,
    uses_tools,
)
from modelyard.telemetry import metadata_with_trace
from modelyard_client.channel import CHANNEL_OPTIONS
from modelyard_client.errors import (
    FailedPrecondition,
    InvalidRequest,
    ModelNotFound,
    ModelyardError,
    ProviderProtocolError,
    error_from_rpc,
    remote_errors,
)
from modelyard_client.v1 import backend_pb2, common_pb2, registry_pb2, registry_pb2_grpc

log = logging.getLogger(__name__)


class ChannelOpener(Protocol):
    """What opens this host's channel to the registry: the assembly passes
    `modelyard.security.channels.InternalChannels` (TLS, the service key); a
    protocol, so that backends import nothing of security (which reads config,
    which reads backends)."""

    def open(self, address: str, options: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Channel: ...


class _Plaintext:
    def open(self, address: str, options: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(address, options=options)


PLAINTEXT: ChannelOpener = _Plaintext()  # a host announced by a test or an embedder


class BackendHost:
    def __init__(self, engines: Sequence[Engine], *, name: str | None = None) -> None:
        self._engines = list(engines)
        self.name = name or "+".join(sorted({e.kind for e in engines})) or "empty"
        self._by_model: dict[str, Engine] = {}
        self._registry_address: str | None = None  # set by `announce`
        self._channels: ChannelOpener = PLAINTEXT  # to the registry, set by `announce`
        self._reports: set[asyncio.Task[None]] = set()
        for engine in self._engines:
            if isinstance(engine, BudgetedEngine):
                engine.report_cold_starts(self._cold_started)

    @property
    def engines(self) -> list[Engine]:
        return list(self._engines)

    async def start(self) -> None:
        await asyncio.gather(*(engine.start() for engine in self._engines))
        self._by_model = {m.id: e for e in self._engines for m in e.models()}

    async def close(self) -> None:
        await asyncio.gather(*(engine.close() for engine in self._engines))
        await self._reported()

    def serves(self, model_id: str) -> bool:
        """Whether one of the engines here serves `model_id`."""
        return model_id in self._by_model or any(e.serves(model_id) for e in self._engines)

    def engine_for(self, model_id: str) -> Engine:
        engine = self._by_model.get(model_id)
        if engine is None:
            engine = next((e for e in self._engines if e.serves(model_id)), None)
            if engine is None:
                raise ModelNotFound(model_id, f"backend '{self.name}'")
            self._by_model[model_id] = engine
        return engine

    async def load(self, model_id: str, keep_loaded: Sequence[str] = ()) -> float:
        """Load `model_id`; the milliseconds it took. `keep_loaded`: models that must stay
        loaded beside it, so its engine refuses (`MemoryBudgetExceeded`) rather than
        unload one. Those its engine does not serve are left out: they take none of its
        memory. Returns once the load's cold start is in the registry."""
        engine = self.engine_for(model_id)
        beside = [m for m in keep_loaded if m != model_id and engine.serves(m)]
        if beside and isinstance(engine, BudgetedEngine):
            took = await engine.load_beside(model_id, beside)
        else:
            took = await engine.load(model_id)
        await self._reported()
        return took

    def models(self, endpoint: str = "") -> list[common_pb2.ModelEntry]:
        """Catalog entries for every hosted model, deployed at `endpoint` when given."""
        out = []
        for engine in self._engines:
            for entry in engine.models():
                if endpoint:
                    entry.deployments.append(
                        common_pb2.Deployment(
                            backend=engine.kind,
                            endpoint=endpoint,
                            # An engine that cannot serve here (CoreML off macOS) says so.
                            health=entry.health or common_pb2.HEALTH_STATUS_HEALTHY,
                        )
                    )
                out.append(entry)
        return out

    def infer_stream(
        self,
        model_id: str,
        model_input: common_pb2.Input,
        params: common_pb2.GenerationParams,
    ) -> AsyncGenerator[Piece, None]:
        engine = self.engine_for(model_id)
        if not takes_tools(engine) and uses_tools(model_input, params):
            raise InvalidRequest(
                f"params.tools: the {engine.kind} engine of backend '{engine.backend}' does not "
                f"send tools to its models yet ('{model_id}')",
                field="params.tools",
            )
        return engine.infer_stream(model_id, model_input, params)

    async def embed(
        self, model_id: str, inputs: Sequence[str], dimensions: int = 0
    ) -> backend_pb2.BackendEmbedResponse:
        """One vector per input, in order, from the engine serving `model_id`; an engine that
        makes none is refused (`FailedPrecondition` naming its kind) before any upstream call.

        What the engine answers is held to what was asked: one vector per input and, with
        `dimensions`, vectors of that length (an upstream that ignores the parameter is
        refused naming it, never passed on as if it had honoured it)."""
        engine = self.engine_for(model_id)
        if not isinstance(engine, EmbeddingEngine):
            raise FailedPrecondition(
                f"the {engine.kind} engine of backend '{engine.backend}' does not make "
                f"embeddings ('{model_id}')"
            )
        vectors, input_tokens = await engine.embed(model_id, inputs, dimensions)
        if len(vectors) != len(inputs):
            raise ProviderProtocolError(
                f"backend '{engine.backend}' answered {len(vectors)} embeddings for "
                f"{len(inputs)} inputs of '{model_id}'"
            )
        if dimensions:
            wrong = next((i for i, v in enumerate(vectors) if len(v) != dimensions), None)
            if wrong is not None:
                raise InvalidRequest(
                    f"dimensions: backend '{engine.backend}' answered '{model_id}' with "
                    f"{len(vectors[wrong])}-value vectors for dimensions {dimensions}; "
                    "it does not honour dimensions (leave it 0 for the model's own length)",
                    field="dimensions",
                )
        return backend_pb2.BackendEmbedResponse(
            embeddings=[common_pb2.Embedding(values=v) for v in vectors],
            usage=common_pb2.Usage(input_tokens=input_tokens),
        )

    def health(self) -> tuple[common_pb2.HealthStatus.ValueType, str]:
        """The worst engine health, with every engine's reason."""
        worst: common_pb2.HealthStatus.ValueType = common_pb2.HEALTH_STATUS_HEALTHY
        reasons = []
        for engine in self._engines:
            h = engine.health()
            worst = max(worst, h.status)
            if h.reason:
                reasons.append(f"{engine.kind}: {h.reason}")
        return worst, "; ".join(reasons)

    def loaded_models(self) -> list[str]:
        return sorted(m for e in self._engines for m in e.loaded_models())

    async def announce(
        self,
        registry_address: str,
        entries: list[common_pb2.ModelEntry],
        channels: ChannelOpener = PLAINTEXT,
    ) -> int:
        """Register (upsert) `entries` (see `models`) in the registry; returns how many.

        `channels`: how the registry is reached, this call and later cold-start reports.

        An entry the registry refuses as invalid (`InvalidRequest`: an id a file's
        name made, a field over its bound) is logged and left out, the others still
        announced; when it refuses them all (an advertised address that is no
        host:port), or refuses otherwise, the registry's own error is raised.
        """
        announced = 0
        refused: list[InvalidRequest] = []
        with remote_errors():
            async with channels.open(registry_address, CHANNEL_OPTIONS) as channel:
                stub = registry_pb2_grpc.RegistryServiceStub(channel)
                for entry in entries:
                    try:
                        await stub.RegisterModel(
                            registry_pb2.RegisterModelRequest(
                                model=entry, upsert=True, merge_deployments=True
                            ),
                            metadata=metadata_with_trace(),
                            timeout=10,
                        )
                    except grpc.aio.AioRpcError as exc:
                        err = error_from_rpc(exc)
                        if not isinstance(err, InvalidRequest):
                            raise
                        log.warning("backend %s: the registry refused %s", self.name, err.message)
                        refused.append(err)
                        continue
                    announced += 1
        self._registry_address = registry_address  # where later cold starts go
        self._channels = channels
        if refused and not announced:
            raise refused[0]
        log.info("backend %s: announced %d model(s)", self.name, announced)
        return announced

    def _cold_started(self, model_id: str, took_ms: float) -> None:
        if self._registry_address is None:
            return  # not announced yet: the announced entry carries it
        task = asyncio.get_running_loop().create_task(
            self._report_cold_start(self._registry_address, model_id, took_ms)
        )
        self._reports.add(task)
        task.add_done_callback(self._reports.discard)

    async def _reported(self) -> None:
        """Wait for the cold starts being written to the registry."""
        await asyncio.gather(*self._reports)

    async def _report_cold_start(
        self, registry_address: str, model_id: str, took_ms: float
    ) -> None:
        """Set the entry's `performance.cold_start_ms`, its other figures as they are."""
        try:
            with remote_errors():
                async with self._channels.open(registry_address, CHANNEL_OPTIONS) as channel:
                    stub = registry_pb2_grpc.RegistryServiceStub(channel)
                    entry = await stub.GetModel(
                        registry_pb2.GetModelRequest(id=model_id),
                        metadata=metadata_with_trace(),
                        timeout=10,
                    )
                    performance = entry.performance
                    performance.cold_start_ms = took_ms
                    await stub.UpdatePerformance(
                        registry_pb2.UpdatePerformanceRequest(id=model_id, performance=performance),
                        metadata=metadata_with_trace(),
                        timeout=10,
                    )
        except ModelyardError as err:
            log.warning(
                "backend %s: the cold start of %s (%.0f ms) did not reach the registry: %s",
                self.name,
                model_id,
                took_ms,
                err.message,
            )
