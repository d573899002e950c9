"""Backend calls and balancing, at the points mutmut showed unchecked (docs/testing.md).

`BackendPool` against a real in-process gRPC backend on a free port (a bare
`BackendService` that answers, hangs or records its callers) and against an
in-process `BackendHost`; `Balancer` and `Lease` over the native pool.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from support.scripted_engine import ScriptedEngine

from modelyard._native import DeploymentPool
from modelyard.backends.engine import Embeddings
from modelyard.backends.host import BackendHost
from modelyard.gateway import balancing
from modelyard.gateway.backend_pool import BackendPool
from modelyard.gateway.balancing import Balancer, Lease
from modelyard.gateway.stream_deadlines import PieceDeadlines, StreamDeadlines
from modelyard.security.channels import InternalChannels
from modelyard_client.channel import ChannelOptions
from modelyard_client.errors import (
    BackendUnavailable,
    DeadlineExceeded,
    ModelyardError,
    RequestTooLarge,
    cap_message,
)
from modelyard_client.scrub import register_secret
from modelyard_client.v1 import backend_pb2, common_pb2

MIB = 1024 * 1024


class _Backend:
    """A bare BackendService/InferStream: sends `chunks`, or hangs when None; records peers."""

    def __init__(
        self, chunks: Sequence[backend_pb2.InferChunk] | None, abort: str | None = None
    ) -> None:
        self.chunks = chunks
        self.abort = abort  # after the chunks: UNAVAILABLE with these details
        self.peers: list[str] = []
        self.sizes: list[int] = []  # of each request received

    async def infer_stream(
        self, request: backend_pb2.InferRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> AsyncIterator[backend_pb2.InferChunk]:
        self.peers.append(context.peer())
        self.sizes.append(request.ByteSize())
        if self.chunks is None:
            await asyncio.Event().wait()
        for chunk in self.chunks or ():
            yield chunk
        if self.abort is not None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, self.abort)


@asynccontextmanager
async def _serving(backend: _Backend) -> AsyncIterator[str]:
    """Serve `backend` on a free port (sending and receiving up to 128 MiB a message); yields
    the address."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_send_message_length", 128 * MIB),
            ("grpc.max_receive_message_length", 128 * MIB),
        ]
    )
    handler = grpc.unary_stream_rpc_method_handler(
        backend.infer_stream,
        request_deserializer=backend_pb2.InferRequest.FromString,
        response_serializer=backend_pb2.InferChunk.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "modelyard.v1.BackendService", {"InferStream": handler}
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


def _deployment(endpoint: str, backend: str = "remote") -> common_pb2.Deployment:
    return common_pb2.Deployment(
        backend=backend, endpoint=endpoint, health=common_pb2.HEALTH_STATUS_HEALTHY
    )


def _request(model_id: str = "remote/m") -> backend_pb2.InferRequest:
    request = backend_pb2.InferRequest(model_id=model_id)
    request.input.text = "hi"
    return request


async def _texts(
    pool: BackendPool, deployment: common_pb2.Deployment, timeout_s: float = 30.0
) -> list[str]:
    """Every chunk's text; a hang past 30 s fails the test instead of blocking it."""
    async with asyncio.timeout(30):
        return [chunk.text async for chunk in pool.infer_stream(deployment, _request(), timeout_s)]


async def _failure(call: Awaitable[object]) -> ModelyardError:
    with pytest.raises(ModelyardError) as info:
        await call
    return info.value


# ---- BackendPool over gRPC -------------------------------------------------------------


async def test_calls_to_one_endpoint_share_one_connection() -> None:
    backend = _Backend([backend_pb2.InferChunk(text="ok")])
    async with _serving(backend) as address:
        pool = BackendPool()
        try:
            assert await _texts(pool, _deployment(address)) == ["ok"]
            assert await _texts(pool, _deployment(address)) == ["ok"]
        finally:
            await pool.close()
    # One channel, so both calls came from the same client port.
    assert len(backend.peers) == 2 and backend.peers[0] == backend.peers[1]


async def test_a_chunk_of_exactly_64_mib_is_received_and_one_byte_more_is_refused() -> None:
    exact = backend_pb2.InferChunk(text="x" * (64 * MIB - 5))
    over = backend_pb2.InferChunk(text="x" * (64 * MIB - 4))
    assert (exact.ByteSize(), over.ByteSize()) == (64 * MIB, 64 * MIB + 1)
    pool = BackendPool()
    try:
        async with _serving(_Backend([exact])) as address:
            (text,) = await _texts(pool, _deployment(address))
            assert len(text) == 64 * MIB - 5
        async with _serving(_Backend([over])) as address:
            err = await _failure(_texts(pool, _deployment(address)))
    finally:
        await pool.close()
    # grpc's own words, wrapped as its version likes ("Stream removed (CLIENT: ...)").
    assert type(err) is RequestTooLarge
    assert "Received message larger than max (67108865 vs. 67108864)" in err.message


async def test_calls_to_one_endpoint_open_one_channel() -> None:
    channels = _RecordingChannels()
    pool = BackendPool(channels=channels)
    try:
        async with _serving(_Backend([backend_pb2.InferChunk(text="ok")])) as address:
            assert await _texts(pool, _deployment(address)) == ["ok"]
            assert await _texts(pool, _deployment(address)) == ["ok"]
    finally:
        await pool.close()
    assert channels.opened == [address]


def _request_of(size: int) -> backend_pb2.InferRequest:
    """An InferRequest of exactly `size` bytes on the wire."""
    request = _request()
    request.input.text = "x" * (size - request.ByteSize() + len(request.input.text))
    while request.ByteSize() > size:  # the length prefixes grew with the text
        request.input.text = request.input.text[:-1]
    assert request.ByteSize() == size
    return request


async def test_a_request_of_exactly_64_mib_is_sent_and_one_byte_more_is_refused() -> None:
    exact, over = _request_of(64 * MIB), _request_of(64 * MIB + 1)
    backend = _Backend([backend_pb2.InferChunk(text="ok")])
    pool = BackendPool()
    try:
        async with _serving(backend) as address, asyncio.timeout(30):
            chunks = [c.text async for c in pool.infer_stream(_deployment(address), exact, 30.0)]
            assert chunks == ["ok"]
            err = await _failure(_drain(pool.infer_stream(_deployment(address), over, 30.0)))
    finally:
        await pool.close()
    assert backend.sizes == [64 * MIB]  # the larger one never left the gateway
    assert type(err) is RequestTooLarge
    assert "Sent message larger than max (67108865 vs. 67108864)" in err.message


async def _drain(chunks: AsyncIterator[backend_pb2.InferChunk]) -> None:
    async for _ in chunks:
        pass


async def test_a_remote_backend_that_does_not_answer_fails_at_the_calls_deadline(
    spans: InMemorySpanExporter,
) -> None:
    async with _serving(_Backend(None)) as address:
        pool = BackendPool()
        try:
            spans.clear()
            err = await _failure(_texts(pool, _deployment(address), timeout_s=0.2))
        finally:
            await pool.close()
    assert type(err) is DeadlineExceeded
    assert err.message == (
        f"backend 'remote' at {address} did not answer in time: Deadline Exceeded"
    )
    (client,) = (s for s in spans.get_finished_spans() if s.kind == SpanKind.CLIENT)
    assert client.status.status_code == StatusCode.ERROR


async def test_a_failed_remote_call_logs_no_warning(
    spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    # The span's error status is a valid one: OpenTelemetry warns about a description
    # given with any status code but ERROR.
    async with _serving(_Backend(None)) as address:
        pool = BackendPool()
        try:
            with caplog.at_level(logging.WARNING):
                await _failure(_texts(pool, _deployment(address), timeout_s=0.2))
        finally:
            await pool.close()
    assert [r.getMessage() for r in caplog.records if r.name.startswith("opentelemetry")] == []


# ---- BackendPool in process ------------------------------------------------------------


async def _in_process(engine: ScriptedEngine) -> tuple[BackendPool, common_pb2.Deployment]:
    host = BackendHost([engine])
    await host.start()
    pool = BackendPool()
    pool.add_in_process("in-process:1", host)
    return pool, _deployment("in-process:1", backend="scripted")


async def test_an_in_process_backend_call_is_an_internal_span_naming_the_deployment(
    spans: InMemorySpanExporter,
) -> None:
    pool, deployment = await _in_process(ScriptedEngine(("remote/m",)))
    spans.clear()
    assert await _texts(pool, deployment) == ["hello", " ", "world", ""]
    assert [(s.name, s.kind, dict(s.attributes or {})) for s in spans.get_finished_spans()] == [
        (
            "modelyard.v1.BackendService/InferStream",
            SpanKind.INTERNAL,
            {
                "rpc.system": "grpc",
                "modelyard.backend": "scripted",
                "server.address": "in-process:1",
                "modelyard.model": "remote/m",
                "modelyard.in_process": True,
            },
        )
    ]


async def test_an_in_process_backend_that_does_not_finish_in_time_is_named() -> None:
    pool, deployment = await _in_process(ScriptedEngine(("remote/m",), delay_s=30))
    err = await _failure(_texts(pool, deployment, timeout_s=0.2))
    assert type(err) is DeadlineExceeded
    assert err.message == "backend 'scripted' (in process) did not finish within 0.2s"


# ---- BackendPool.embed -------------------------------------------------------------------


class _EmbeddingEngine(ScriptedEngine):
    """Embeds each text as [its length]; `hang`: never answers."""

    def __init__(self, *, hang: bool = False) -> None:
        super().__init__(("remote/m",))
        self.hang = hang

    async def embed(self, model_id: str, inputs: Sequence[str], dimensions: int) -> Embeddings:
        if self.hang:
            await asyncio.Event().wait()
        return Embeddings([[float(len(text))] for text in inputs], 0)


class _EmbedBackend:
    """A bare BackendService/Embed: answers [1.0] per input, or hangs; records each call's
    metadata."""

    def __init__(self, *, hang: bool = False) -> None:
        self.hang = hang
        self.metadata: list[dict[str, str | bytes]] = []

    async def embed(
        self,
        request: backend_pb2.BackendEmbedRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> backend_pb2.BackendEmbedResponse:
        self.metadata.append(dict(context.invocation_metadata() or ()))
        if self.hang:
            await asyncio.Event().wait()
        return backend_pb2.BackendEmbedResponse(
            embeddings=[common_pb2.Embedding(values=[1.0]) for _ in request.inputs]
        )


@asynccontextmanager
async def _serving_unary(
    method: str, handler: grpc.RpcMethodHandler[Any, Any]
) -> AsyncIterator[str]:
    """Serve one unary BackendService method on a free port; yields the address."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("modelyard.v1.BackendService", {method: handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


def _serving_embed(backend: _EmbedBackend) -> AbstractAsyncContextManager[str]:
    handler = grpc.unary_unary_rpc_method_handler(
        backend.embed,
        request_deserializer=backend_pb2.BackendEmbedRequest.FromString,
        response_serializer=backend_pb2.BackendEmbedResponse.SerializeToString,
    )
    return _serving_unary("Embed", handler)


def _embed_request() -> backend_pb2.BackendEmbedRequest:
    return backend_pb2.BackendEmbedRequest(model_id="remote/m", inputs=["abc", "de"])


async def test_an_in_process_embed_is_an_internal_span(spans: InMemorySpanExporter) -> None:
    pool, deployment = await _in_process(_EmbeddingEngine())
    spans.clear()
    answer = await pool.embed(deployment, _embed_request(), 5.0)
    assert [list(e.values) for e in answer.embeddings] == [[3.0], [2.0]]
    assert [(s.name, s.kind) for s in spans.get_finished_spans()] == [
        ("modelyard.v1.BackendService/Embed", SpanKind.INTERNAL)
    ]


async def test_an_in_process_embed_that_does_not_answer_in_time_is_named(
    spans: InMemorySpanExporter,
) -> None:
    pool, deployment = await _in_process(_EmbeddingEngine(hang=True))
    spans.clear()
    async with asyncio.timeout(30):  # a hang fails the test instead of blocking it
        err = await _failure(pool.embed(deployment, _embed_request(), 0.2))
    assert type(err) is DeadlineExceeded
    assert err.message == (
        "backend 'scripted' (in process) did not answer the embeddings of 'remote/m' within 0.2s"
    )
    (span,) = spans.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR


async def test_a_remote_embed_that_does_not_answer_fails_at_the_calls_deadline(
    spans: InMemorySpanExporter,
) -> None:
    pool = BackendPool()
    try:
        async with _serving_embed(_EmbedBackend(hang=True)) as address:
            spans.clear()
            async with asyncio.timeout(30):
                err = await _failure(pool.embed(_deployment(address), _embed_request(), 0.2))
    finally:
        await pool.close()
    assert type(err) is DeadlineExceeded
    assert err.message == f"backend 'remote' at {address} did not answer in time: Deadline Exceeded"
    (span,) = spans.get_finished_spans()
    assert (span.kind, span.status.status_code) == (SpanKind.CLIENT, StatusCode.ERROR)


async def test_a_remote_embed_carries_its_spans_trace_context(
    spans: InMemorySpanExporter,
) -> None:
    backend = _EmbedBackend()
    pool = BackendPool()
    try:
        async with _serving_embed(backend) as address:
            spans.clear()
            answer = await pool.embed(_deployment(address), _embed_request(), 5.0)
    finally:
        await pool.close()
    assert [list(e.values) for e in answer.embeddings] == [[1.0], [1.0]]
    (span,) = spans.get_finished_spans()
    context = span.context
    assert context is not None
    assert [m.get("traceparent") for m in backend.metadata] == [
        f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    ]


class _FailingEmbeddingEngine(ScriptedEngine):
    def __init__(self, message: str) -> None:
        super().__init__(("remote/m",))
        self.message = message

    async def embed(self, model_id: str, inputs: Sequence[str], dimensions: int) -> Embeddings:
        raise BackendUnavailable(self.message)


async def _failed_call(how: str, said: str) -> ModelyardError:
    """A backend call that fails `how`, its upstream having said `said` (where it says any)."""
    if how == "in-process embed":
        pool, deployment = await _in_process(_FailingEmbeddingEngine(said))
        return await _failure(pool.embed(deployment, _embed_request(), 5.0))
    first_token = StreamDeadlines(PieceDeadlines(0.1, None))
    pool = BackendPool(first_token if how == "remote first-token deadline" else None)
    backend = _Backend(None) if how == "remote first-token deadline" else _Backend([], said)
    try:
        async with _serving(backend) as address, asyncio.timeout(30):
            return await _failure(_texts(pool, _deployment(address)))
    finally:
        await pool.close()


@pytest.mark.parametrize(
    "how", ["in-process embed", "remote stream error", "remote first-token deadline"]
)
async def test_a_failed_backend_calls_span_holds_the_error_scrubbed_as_the_wire_has_it(
    spans: InMemorySpanExporter, how: str
) -> None:
    secret = "canary" + secrets.token_hex(10)  # no pattern matches it: only its registration
    register_secret(secret)
    said = f"upstream said Authorization: Bearer {secret}"
    spans.clear()
    err = await _failed_call(how, said)
    (span,) = spans.get_finished_spans()
    shown = cap_message(err.message)
    if how != "remote first-token deadline":
        assert type(err) is BackendUnavailable
        assert err.message.endswith(said)  # the caller's own error, as it was
        assert shown.endswith("upstream said Authorization: Bearer [REDACTED]")
    assert (span.status.status_code, span.status.description) == (StatusCode.ERROR, shown)
    assert secret not in repr([dict(event.attributes or {}) for event in span.events])


# ---- BackendPool.unload ------------------------------------------------------------------


class _UnloadingEngine(ScriptedEngine):
    """Records each model it is told to unload; says each was loaded."""

    def __init__(self) -> None:
        super().__init__(("remote/m",))
        self.unloaded: list[str] = []

    async def unload(self, model_id: str) -> bool:
        self.unloaded.append(model_id)
        return True


class _UnloadBackend:
    """A bare BackendService/Unload: records the model and the time the call had left;
    answers was_loaded, or fails with `abort` (a code and its details)."""

    def __init__(self, abort: tuple[grpc.StatusCode, str] | None = None) -> None:
        self.abort = abort
        self.calls: list[tuple[str, float | None]] = []

    async def unload(
        self,
        request: backend_pb2.UnloadRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> backend_pb2.UnloadResponse:
        self.calls.append((request.model_id, context.time_remaining()))
        if self.abort is not None:
            await context.abort(*self.abort)
        return backend_pb2.UnloadResponse(was_loaded=True)


def _serving_unload(backend: _UnloadBackend) -> AbstractAsyncContextManager[str]:
    handler = grpc.unary_unary_rpc_method_handler(
        backend.unload,
        request_deserializer=backend_pb2.UnloadRequest.FromString,
        response_serializer=backend_pb2.UnloadResponse.SerializeToString,
    )
    return _serving_unary("Unload", handler)


async def test_an_in_process_backend_unloads_the_model_named() -> None:
    engine = _UnloadingEngine()
    host = BackendHost([engine])
    await host.start()
    pool = BackendPool()
    pool.add_in_process("in-process:1", host)
    async with asyncio.timeout(30):
        was_loaded = await pool.unload(_deployment("in-process:1", backend="scripted"), "remote/m")
    assert (was_loaded, engine.unloaded) == (True, ["remote/m"])


class _Timeouts(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    """Records each unary call's method and the timeout the caller gave it."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, float | None]] = []

    async def intercept_unary_unary(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        method = client_call_details.method
        name = method.decode() if isinstance(method, bytes) else method
        self.seen.append((name, client_call_details.timeout))
        return await continuation(client_call_details, request)


@dataclass(frozen=True)
class _RecordingChannels(InternalChannels):
    """Plaintext channels whose calls `timeouts` records."""

    timeouts: _Timeouts = field(default_factory=_Timeouts)
    opened: list[str] = field(default_factory=list)  # the address of each channel opened

    def open(self, address: str, options: ChannelOptions = ()) -> grpc.aio.Channel:
        self.opened.append(address)
        interceptors: Any = [self.timeouts]  # grpc-stubs leave the interceptor types partial
        return grpc.aio.insecure_channel(address, options=options, interceptors=interceptors)


async def test_a_remote_backend_is_asked_to_unload_the_model_within_the_timeout() -> None:
    backend = _UnloadBackend()
    channels = _RecordingChannels()
    pool = BackendPool(channels=channels)
    try:
        async with _serving_unload(backend) as address, asyncio.timeout(30):
            given = await pool.unload(_deployment(address), "remote/m", timeout_s=5.0)
            default = await pool.unload(_deployment(address), "remote/m")
    finally:
        await pool.close()
    assert (given, default) == (True, True)
    assert [model for model, _ in backend.calls] == ["remote/m", "remote/m"]
    unload = "/modelyard.v1.BackendService/Unload"
    assert channels.timeouts.seen == [(unload, 5.0), (unload, 300.0)]  # the default: 300 s
    (_, left), _ = backend.calls  # and the server has the deadline
    assert left is not None and 4.0 < left <= 5.1  # (rounded up to the ms on the wire)


async def test_a_remote_backend_refusing_an_unload_is_named() -> None:
    backend = _UnloadBackend(abort=(grpc.StatusCode.UNAVAILABLE, "draining"))
    pool = BackendPool()
    try:
        async with _serving_unload(backend) as address, asyncio.timeout(30):
            err = await _failure(pool.unload(_deployment(address), "remote/m"))
    finally:
        await pool.close()
    assert (type(err), err.message) == (
        BackendUnavailable,
        f"backend 'remote' at {address} is unavailable: draining",
    )


# ---- BackendPool.load --------------------------------------------------------------------


class _LoadingEngine(ScriptedEngine):
    """Records each model it is told to load; each load takes 12.5 ms, it says."""

    def __init__(self) -> None:
        super().__init__(("remote/m",))
        self.loaded: list[str] = []

    async def load(self, model_id: str) -> float:
        self.loaded.append(model_id)
        return 12.5


class _LoadBackend:
    """A bare BackendService/Load: records the model and the models to keep; answers 42 ms,
    or fails with `abort`."""

    def __init__(self, abort: tuple[grpc.StatusCode, str] | None = None) -> None:
        self.abort = abort
        self.calls: list[tuple[str, list[str]]] = []

    async def load(
        self,
        request: backend_pb2.LoadRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> backend_pb2.LoadResponse:
        self.calls.append((request.model_id, list(request.keep_loaded)))
        if self.abort is not None:
            await context.abort(*self.abort)
        return backend_pb2.LoadResponse(model_id=request.model_id, loaded=True, load_ms=42.0)


def _serving_load(backend: _LoadBackend) -> AbstractAsyncContextManager[str]:
    handler = grpc.unary_unary_rpc_method_handler(
        backend.load,
        request_deserializer=backend_pb2.LoadRequest.FromString,
        response_serializer=backend_pb2.LoadResponse.SerializeToString,
    )
    return _serving_unary("Load", handler)


async def test_an_in_process_backend_loads_the_model_named() -> None:
    engine = _LoadingEngine()
    host = BackendHost([engine])
    await host.start()
    pool = BackendPool()
    pool.add_in_process("in-process:1", host)
    async with asyncio.timeout(30):
        took = await pool.load(_deployment("in-process:1", backend="scripted"), "remote/m")
    assert (took, engine.loaded) == (12.5, ["remote/m"])


async def test_a_remote_backend_is_asked_to_load_the_model_beside_others_within_the_timeout() -> (
    None
):
    backend = _LoadBackend()
    channels = _RecordingChannels()
    pool = BackendPool(channels=channels)
    try:
        async with _serving_load(backend) as address, asyncio.timeout(30):
            given = await pool.load(_deployment(address), "remote/m", ["remote/k"], timeout_s=5.0)
            default = await pool.load(_deployment(address), "remote/m")
    finally:
        await pool.close()
    assert (given, default) == (42.0, 42.0)
    assert backend.calls == [("remote/m", ["remote/k"]), ("remote/m", [])]
    load = "/modelyard.v1.BackendService/Load"
    assert channels.timeouts.seen == [(load, 5.0), (load, 300.0)]  # the default: 300 s


async def test_a_remote_backend_refusing_a_load_is_named() -> None:
    backend = _LoadBackend(abort=(grpc.StatusCode.UNAVAILABLE, "no memory left"))
    pool = BackendPool()
    try:
        async with _serving_load(backend) as address, asyncio.timeout(30):
            err = await _failure(pool.load(_deployment(address), "remote/m"))
    finally:
        await pool.close()
    assert (type(err), err.message) == (
        BackendUnavailable,
        f"backend 'remote' at {address} is unavailable: no memory left",
    )


# ---- Balancer and Lease ----------------------------------------------------------------


def _model(
    *regions: str, input_cost: float = 0.0, output_cost: float = 0.0
) -> common_pb2.ModelEntry:
    model = common_pb2.ModelEntry(id="remote/m")
    model.cost.usd_per_input_token = input_cost
    model.cost.usd_per_output_token = output_cost
    for i, region in enumerate(regions):
        d = model.deployments.add(backend="remote", endpoint=f"10.0.0.{i}:50051", region=region)
        d.health = common_pb2.HEALTH_STATUS_HEALTHY
    return model


def test_a_lease_reports_its_duration_in_milliseconds(monkeypatch: pytest.MonkeyPatch) -> None:
    pool = DeploymentPool([("10.0.0.0:50051", "", 0.0)])
    pool.start(0)
    lease = Lease(pool, 0, _model("").deployments[0], started=10.0)
    monkeypatch.setattr(balancing, "time", SimpleNamespace(perf_counter=lambda: 10.25))
    lease.finish(True)
    in_flight, latency_ms, _, _ = pool.stats(0)
    assert (in_flight, latency_ms) == (0, 250.0)


def test_a_balancer_built_without_arguments_picks_the_least_loaded_deployment() -> None:
    balancer = Balancer()
    model = _model("", "")
    first, second = balancer.lease(model), balancer.lease(model)
    assert (first.index, second.index) == (0, 1)
    second.finish(True)
    # Round robin would come back to 0; 0 is still busy with the first call.
    assert balancer.lease(model).index == 1


def test_leases_of_the_same_deployments_share_their_in_flight_counts() -> None:
    balancer = Balancer("least_loaded")
    leases = [balancer.lease(_model("us", "eu")) for _ in range(4)]  # a new entry each time
    assert [lease.index for lease in leases] == [0, 1, 0, 1]


def test_a_model_whose_deployments_change_is_balanced_over_the_new_ones() -> None:
    balancer = Balancer("region_affinity", "eu")
    lease = balancer.lease(_model("eu", "us"))
    assert lease.index == 0
    lease.finish(True)
    # The same endpoints, now in other regions: a new pool, which knows where "eu" is.
    assert balancer.lease(_model("us", "eu")).index == 1


def test_a_region_affinity_balancer_picks_a_deployment_in_its_region() -> None:
    assert Balancer("region_affinity", "eu").lease(_model("us", "eu")).index == 1


def test_a_region_affinity_balancer_without_a_region_prefers_deployments_without_one() -> None:
    assert Balancer("region_affinity").lease(_model("us", "")).index == 1


def test_an_unknown_strategy_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ValueError) as info:
        Balancer("fastest")
    assert str(info.value) == (
        "unknown balancing strategy 'fastest'; use one of "
        "('round_robin', 'least_loaded', 'p2c', 'cost_optimized', 'region_affinity')"
    )


def test_a_model_whose_output_costs_more_than_its_input_is_leased() -> None:
    # The pool is given the sum of both prices; it refuses a negative cost.
    lease = Balancer("cost_optimized").lease(_model("us", input_cost=1e-6, output_cost=3e-6))
    assert (lease.index, lease.deployment.endpoint) == (0, "10.0.0.0:50051")
