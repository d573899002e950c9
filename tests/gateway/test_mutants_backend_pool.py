"""Backend calls and balancing, at the points mutmut showed unchecked (docs/testing.md).

`BackendPool` against a real in-process gRPC backend on a free port (a bare
`BackendService` that answers, hangs or records its callers) and against an
in-process `BackendHost`; `Balancer` and `Lease` over the native pool.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from types import SimpleNamespace

import grpc
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from support.scripted_engine import ScriptedEngine

from modelyard._native import DeploymentPool
from modelyard.backends.host import BackendHost
from modelyard.gateway import balancing
from modelyard.gateway.backend_pool import BackendPool
from modelyard.gateway.balancing import Balancer, Lease
from modelyard_client.errors import DeadlineExceeded, ModelyardError, RequestTooLarge
from modelyard_client.v1 import backend_pb2, common_pb2

MIB = 1024 * 1024


class _Backend:
    """A bare BackendService/InferStream: sends `chunks`, or hangs when None; records peers."""

    def __init__(self, chunks: Sequence[backend_pb2.InferChunk] | None) -> None:
        self.chunks = chunks
        self.peers: list[str] = []

    async def infer_stream(
        self, request: backend_pb2.InferRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> AsyncIterator[backend_pb2.InferChunk]:
        self.peers.append(context.peer())
        if self.chunks is None:
            await asyncio.Event().wait()
        for chunk in self.chunks or ():
            yield chunk


@asynccontextmanager
async def _serving(backend: _Backend) -> AsyncIterator[str]:
    """Serve `backend` on a free port (sending up to 128 MiB a message); yields the address."""
    server = grpc.aio.server(options=[("grpc.max_send_message_length", 128 * MIB)])
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
