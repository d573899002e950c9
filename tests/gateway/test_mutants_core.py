"""Gateway core behaviours that mutation testing found unchecked (docs/testing.md).

The client's deadline reaching every RPC's core call, what `GatewayCore` puts in
a response and a backend request, its refusals' whole messages, the refund of a
request no deployment could take, a reservation used to the token, and a fresh
catalog copy. The core is built on a real `CatalogView`, `BackendPool` and
in-process `BackendHost` running a `ScriptedEngine`; the RPCs go through a real
in-process stack.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from typing import Any

import grpc
import pytest
from conftest import StackFactory
from support.scripted_engine import ScriptedEngine

import modelyard.gateway.core as core_module
from modelyard.backends.host import BackendHost
from modelyard.gateway.arm_outcomes import ArmOutcomes
from modelyard.gateway.backend_pool import BackendPool
from modelyard.gateway.catalog_view import CatalogView
from modelyard.gateway.core import GatewayCore
from modelyard.gateway.limits import ModelLimits
from modelyard.gateway.route_view import RouteView
from modelyard.gateway.settings import GatewaySettings
from modelyard.gateway.validation import check_request
from modelyard.model_input import estimate_input_tokens
from modelyard.ratelimit.local import LocalBucketStore
from modelyard.ratelimit.plan import Bucket, Demand, QuotaConfig, Rates, demands_for
from modelyard.server.runtime import RunningServer, bind, start_server
from modelyard.server.unimplemented import with_unimplemented
from modelyard_client.errors import (
    AllModelsFailed,
    BackendUnavailable,
    ContextLengthExceeded,
    FailedPrecondition,
    InvalidRequest,
    ModelyardError,
)
from modelyard_client.v1 import (
    backend_pb2,
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    hotswap_pb2,
    registry_pb2,
    registry_pb2_grpc,
)

Change = registry_pb2.ModelChange
MODEL = "scripted/echo"
ENDPOINT = "127.0.0.1:1"  # never dialled: the pool calls the host in this process


class RecordingPool(BackendPool):
    """A `BackendPool` that keeps every backend request it is handed."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[backend_pb2.InferRequest] = []

    def infer_stream(
        self,
        deployment: common_pb2.Deployment,
        request: backend_pb2.InferRequest,
        timeout_s: float,
    ) -> AsyncGenerator[backend_pb2.InferChunk, None]:
        self.requests.append(request)
        return super().infer_stream(deployment, request, timeout_s)


def _entry(
    engine: ScriptedEngine,
    *,
    health: common_pb2.HealthStatus.ValueType = common_pb2.HEALTH_STATUS_HEALTHY,
    health_reason: str = "",
    deployment_health: common_pb2.HealthStatus.ValueType = common_pb2.HEALTH_STATUS_HEALTHY,
    deployed: bool = True,
    limits: common_pb2.RateLimits | None = None,
) -> common_pb2.ModelEntry:
    entry = engine.models()[0]
    entry.health = health
    entry.health_reason = health_reason
    if deployed:
        entry.deployments.append(
            common_pb2.Deployment(backend="scripted", endpoint=ENDPOINT, health=deployment_health)
        )
    if limits is not None:
        entry.limits.CopyFrom(limits)
    return entry


def _upsert(view: CatalogView, entry: common_pb2.ModelEntry, revision: int = 1) -> None:
    view.apply(Change(kind=Change.KIND_UPSERTED, revision=revision, model=entry))


async def _core(
    engine: ScriptedEngine,
    entry: common_pb2.ModelEntry | None = None,
    limits: ModelLimits | None = None,
) -> tuple[GatewayCore, RecordingPool]:
    """A core serving `entry` (the engine's model, deployed and healthy) from `engine`,
    built with no balancer, selector or settings of its own."""
    host = BackendHost([engine])
    await host.start()
    pool = RecordingPool()
    pool.add_in_process(ENDPOINT, host)
    view = CatalogView()
    _upsert(view, entry if entry is not None else _entry(engine))
    return GatewayCore(view, pool, limits), pool


def _request(model: str = MODEL, max_tokens: int = 4) -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=model)
    request.input.text = "hi"
    request.params.max_tokens = max_tokens
    return request


async def _chunks(core: GatewayCore, request: gateway_pb2.GenerateRequest) -> list[Any]:
    return [chunk async for chunk in core.generate_stream(request)]


async def _failure(core: GatewayCore, request: gateway_pb2.GenerateRequest) -> ModelyardError:
    with pytest.raises(ModelyardError) as info:
        await _chunks(core, request)
    return info.value


# --- The client's deadline, not the gateway's default, bounds every RPC ---------------


@pytest.fixture
async def slow_gateway(
    make_stack: StackFactory,
) -> AsyncIterator[gateway_pb2_grpc.GatewayServiceAsyncStub]:
    """A gateway whose default deadline (0.2 s) is shorter than its backend's answer (0.6 s)."""
    engine = ScriptedEngine(pieces=("late",), delay_s=0.6)
    stack = await make_stack(
        roles=("registry", "gateway"), engines=[engine], default_deadline_s=0.2
    )
    async with grpc.aio.insecure_channel(stack.address) as channel:
        yield gateway_pb2_grpc.GatewayServiceStub(channel)


CLIENT_DEADLINE_S = 20.0  # far above the backend's 0.6 s, however loaded the machine


async def test_generate_is_bounded_by_the_clients_deadline_not_the_default(
    slow_gateway: gateway_pb2_grpc.GatewayServiceAsyncStub,
) -> None:
    reply = await slow_gateway.Generate(_request(), timeout=CLIENT_DEADLINE_S)
    assert (reply.model_id, reply.text) == (MODEL, "late")


async def test_generate_stream_is_bounded_by_the_clients_deadline_not_the_default(
    slow_gateway: gateway_pb2_grpc.GatewayServiceAsyncStub,
) -> None:
    texts = [
        c.text async for c in slow_gateway.GenerateStream(_request(), timeout=CLIENT_DEADLINE_S)
    ]
    assert "".join(texts) == "late"


async def test_batch_items_are_bounded_by_the_clients_deadline_not_the_default(
    slow_gateway: gateway_pb2_grpc.GatewayServiceAsyncStub,
) -> None:
    request = gateway_pb2.BatchGenerateRequest(requests=[_request(), _request()])
    reply = await slow_gateway.BatchGenerate(request, timeout=CLIENT_DEADLINE_S)
    assert [(r.WhichOneof("outcome"), r.response.text, r.error.message) for r in reply.results] == [
        ("response", "late", ""),
        ("response", "late", ""),
    ]


async def test_compare_items_are_bounded_by_the_clients_deadline_not_the_default(
    slow_gateway: gateway_pb2_grpc.GatewayServiceAsyncStub,
) -> None:
    request = gateway_pb2.CompareRequest(models=[MODEL])
    request.input.text = "q"
    reply = await slow_gateway.Compare(request, timeout=CLIENT_DEADLINE_S)
    assert [(r.WhichOneof("outcome"), r.response.text, r.error.message) for r in reply.results] == [
        ("response", "late", "")
    ]


# --- What GatewayCore answers and sends ----------------------------------------------


async def test_a_core_built_without_a_balancer_balances_with_its_own() -> None:
    core, _ = await _core(ScriptedEngine(pieces=("x",)))
    reply = await core.generate(_request())
    assert (reply.model_id, reply.text) == (MODEL, "x")


class _Clock:
    """`time` for the core module: `perf_counter` reads 5.0 first, 5.25 after."""

    def __init__(self) -> None:
        self._readings: Iterator[float] = iter([5.0])

    def perf_counter(self) -> float:
        return next(self._readings, 5.25)


async def test_generate_reports_its_latency_in_milliseconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    core, _ = await _core(ScriptedEngine(pieces=("x",)))
    monkeypatch.setattr(core_module, "time", _Clock())
    reply = await core.generate(_request())
    assert reply.latency_ms == 250.0


async def test_generate_answers_with_the_requests_id() -> None:
    core, _ = await _core(ScriptedEngine(pieces=("x",)))
    request = _request()
    request.request_id = "req-7"
    reply = await core.generate(request)
    assert reply.request_id == "req-7"


async def test_the_backend_is_sent_the_requests_id() -> None:
    core, pool = await _core(ScriptedEngine(pieces=("x",)))
    request = _request()
    request.request_id = "req-7"
    await core.generate(request)
    assert [r.request_id for r in pool.requests] == ["req-7"]


async def test_a_request_without_an_id_is_given_a_fresh_one_the_answer_carries() -> None:
    core, pool = await _core(ScriptedEngine(pieces=("x",)))
    replies = [await core.generate(_request()), await core.generate(_request())]
    ids = [r.request_id for r in pool.requests]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids), ids
    assert ids[0] != ids[1]
    assert [r.request_id for r in replies] == ids  # the caller learns the id the backend got


async def test_the_first_streamed_chunk_carries_the_request_id() -> None:
    core, _ = await _core(ScriptedEngine(pieces=("hello", " ", "world")))
    request = _request()
    request.request_id = "req-9"
    chunks = await _chunks(core, request)
    assert [c.request_id for c in chunks] == ["req-9", "", "", ""]


async def test_only_the_first_streamed_chunk_names_the_model() -> None:
    core, _ = await _core(ScriptedEngine(pieces=("hello", " ", "world")))
    chunks = await _chunks(core, _request())
    assert [(c.model_id, c.text) for c in chunks] == [
        (MODEL, "hello"),
        ("", " "),
        ("", "world"),
        ("", ""),
    ]


# --- Refusals, their whole messages ----------------------------------------------------


async def test_no_model_named_without_a_selector_is_refused_saying_so() -> None:
    core, _ = await _core(ScriptedEngine())
    error = await _failure(core, _request(model=""))
    assert (type(error), error.message) == (
        FailedPrecondition,
        "no model named and this gateway has no selector",
    )


async def test_an_unservable_model_is_refused_naming_its_health_and_reason() -> None:
    engine = ScriptedEngine()
    entry = _entry(engine, health=common_pb2.HEALTH_STATUS_UNHEALTHY, health_reason="overheated")
    core, _ = await _core(engine, entry)
    error = await _failure(core, _request())
    assert (type(error), error.message) == (
        BackendUnavailable,
        "model 'scripted/echo' is HEALTH_STATUS_UNHEALTHY: overheated",
    )


async def test_an_unservable_model_without_a_reason_is_refused_naming_its_health() -> None:
    engine = ScriptedEngine()
    entry = _entry(engine, health=common_pb2.HEALTH_STATUS_UNAVAILABLE)
    core, _ = await _core(engine, entry)
    error = await _failure(core, _request())
    assert (type(error), error.message) == (
        BackendUnavailable,
        "model 'scripted/echo' is HEALTH_STATUS_UNAVAILABLE",
    )


async def test_a_model_without_deployments_is_refused_saying_so() -> None:
    engine = ScriptedEngine()
    core, _ = await _core(engine, _entry(engine, deployed=False))
    error = await _failure(core, _request())
    assert (type(error), error.message) == (
        BackendUnavailable,
        "model 'scripted/echo' has no deployment: no backend serves it",
    )


def test_top_p_above_one_is_refused() -> None:
    request = _request()
    request.params.top_p = 1.5
    with pytest.raises(InvalidRequest) as info:
        check_request(request, GatewaySettings())
    assert info.value.message == "params.top_p must be in (0, 1], got 1.5"


# --- Rate-limit reservations -----------------------------------------------------------


def _token_bucket(entry: common_pb2.ModelEntry) -> Bucket:
    (tokens,) = [
        d.bucket for d in demands_for(entry, None, 1, QuotaConfig()) if d.bucket.unit == "tokens"
    ]
    return tokens


async def test_a_request_no_deployment_can_take_gets_its_whole_reservation_back() -> None:
    # 6 tokens a minute: what one request reserves (1 input + 4 output) refills in 50 s.
    engine = ScriptedEngine()
    entry = _entry(
        engine,
        deployment_health=common_pb2.HEALTH_STATUS_UNHEALTHY,
        limits=common_pb2.RateLimits(tokens_per_minute=6),
    )
    store = LocalBucketStore()
    core, _ = await _core(engine, entry, ModelLimits(store=store))
    assert estimate_input_tokens(_request().input) + 4 == 5
    error = await _failure(core, _request())
    assert isinstance(error, BackendUnavailable), error
    assert store.level(_token_bucket(entry)) == 6.0


class RecordingStore(LocalBucketStore):
    def __init__(self) -> None:
        super().__init__()
        self.given_back: list[list[Demand]] = []

    async def give_back(self, demands: Sequence[Demand]) -> None:
        self.given_back.append(list(demands))
        await super().give_back(demands)


async def test_a_reservation_used_to_the_token_gives_nothing_back() -> None:
    entry = _entry(ScriptedEngine(), limits=common_pb2.RateLimits(tokens_per_minute=600))
    store = RecordingStore()
    limits = ModelLimits(store=store)
    used_up = await limits.reserve(entry, 5)
    await used_up.settle(5)
    assert store.given_back == []
    partly = await limits.reserve(entry, 5)
    await partly.settle(3)
    assert store.given_back == [[Demand(_token_bucket(entry), 2)]]


# --- A fresh catalog copy --------------------------------------------------------------


def test_a_fresh_view_applies_a_live_change_and_removes_an_unknown_model_quietly() -> None:
    view = CatalogView()
    _upsert(view, common_pb2.ModelEntry(id="p/a", provider="p"), revision=3)
    assert [m.id for m in view.models()] == ["p/a"]
    assert view.revision == 3
    gone = common_pb2.ModelEntry(id="p/never-seen", provider="p")
    view.apply(Change(kind=Change.KIND_REMOVED, revision=4, model=gone))
    assert [m.id for m in view.models()] == ["p/a"]
    assert view.revision == 4


class RecordingRegistry(registry_pb2_grpc.RegistryServiceServicer):
    """Records every watch's resume point, answers SYNCED and then nothing."""

    def __init__(self) -> None:
        self.watches: list[tuple[int, str]] = []

    async def WatchModels(
        self, request: registry_pb2.WatchModelsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Change]:
        self.watches.append((request.after_revision, request.catalog_id))
        yield Change(kind=Change.KIND_SYNCED, revision=request.after_revision, catalog_id="c1")
        await asyncio.Event().wait()


async def test_a_view_that_never_synced_names_no_catalog_when_it_resumes() -> None:
    view = CatalogView()
    assert view.catalog_id == ""
    _upsert(view, common_pb2.ModelEntry(id="p/a", provider="p"), revision=7)
    registry = with_unimplemented(RecordingRegistry)
    server: RunningServer = await start_server([bind(registry)], "127.0.0.1:0")
    follower = asyncio.create_task(view.follow(f"127.0.0.1:{server.port}"))
    try:
        await asyncio.wait_for(view.synced.wait(), timeout=10)
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        await server.server.stop(0)
    assert registry.watches == [(7, "")]
    assert view.catalog_id == "c1"


# --- After a context-length refusal ----------------------------------------------------


async def test_a_fallback_the_catalog_lacks_is_tried_not_skipped_as_too_small() -> None:
    """A model of unknown window is not passed over after a context-length refusal: tried,
    it is not found, and the chain fails naming both attempts as they went."""
    refusal = ContextLengthExceeded("the prompt does not fit 4096 tokens")
    core, _ = await _core(ScriptedEngine(fail_with=refusal))
    request = _request()
    request.fallback_models.append("scripted/missing")
    error = await _failure(core, request)
    assert type(error) is AllModelsFailed
    assert [(a.model_id, a.code, a.message) for a in error.attempts] == [
        ("scripted/echo", "INVALID_ARGUMENT", "the prompt does not fit 4096 tokens"),
        ("scripted/missing", "NOT_FOUND", "model 'scripted/missing' is not in the catalog"),
    ]


# --- GatewayCore.generate: the whole answer of the stream, with the call's own arguments -


async def test_a_whole_answer_is_bounded_by_the_deadline_given_not_the_default() -> None:
    engine = ScriptedEngine(pieces=("late",), delay_s=0.6)
    host = BackendHost([engine])
    await host.start()
    pool = BackendPool()
    pool.add_in_process(ENDPOINT, host)
    view = CatalogView()
    _upsert(view, _entry(engine))
    core = GatewayCore(view, pool, settings=GatewaySettings(default_deadline_s=0.2))
    reply = await core.generate(_request(), core.deadline(CLIENT_DEADLINE_S))
    assert (reply.model_id, reply.text) == (MODEL, "late")


async def test_a_whole_answer_draws_on_the_callers_key() -> None:
    engine = ScriptedEngine(pieces=("x",))
    entry = _entry(engine)
    quotas = QuotaConfig(per_key=Rates(requests_per_minute=6))
    store = LocalBucketStore()
    core, _ = await _core(engine, entry, ModelLimits(quotas, store))
    reply = await core.generate(_request(), None, "key-1")
    assert reply.text == "x"

    def requests_level(api_key: str | None) -> float:
        (bucket,) = [
            d.bucket
            for d in demands_for(entry, api_key, 1, quotas)
            if d.bucket.unit == "requests" and d.bucket.scope.kind == "key"
        ]
        return store.level(bucket)

    assert requests_level(None) == 6.0  # the anonymous callers' budget, never drawn on
    assert 5.0 <= requests_level("key-1") < 5.5  # one request, and 0.1 a second refilled


async def test_a_whole_answer_through_a_split_reports_no_time_to_the_first_piece() -> None:
    """The caller of `generate` reads no piece as it comes: its arm's outcome has no ttft,
    though each piece here took 50 ms."""
    engine = ScriptedEngine(pieces=("a", "b", "c"), delay_s=0.05)
    split = hotswap_pb2.Split(
        id="ab-1",
        kind=hotswap_pb2.Split.KIND_AB_TEST,
        arms=[
            hotswap_pb2.ABArm(name="a", model_id=MODEL, weight=0.5),
            hotswap_pb2.ABArm(name="b", model_id=MODEL, weight=0.5),
        ],
    )
    routes = RouteView()
    RouteChange = hotswap_pb2.RouteChange
    routes.apply(RouteChange(kind=RouteChange.KIND_SYNCED, revision=0))
    route = hotswap_pb2.Route(alias="chat", model_id=MODEL, split=split)
    routes.apply(RouteChange(kind=RouteChange.KIND_UPSERTED, route=route, revision=1))
    host = BackendHost([engine])
    await host.start()
    pool = BackendPool()
    pool.add_in_process(ENDPOINT, host)
    view = CatalogView()
    _upsert(view, _entry(engine))
    outcomes = ArmOutcomes()
    core = GatewayCore(view, pool, routes=routes, outcomes=outcomes)
    reply = await core.generate(_request(model="chat"))
    assert (reply.model_id, reply.text) == (MODEL, "abc")
    sent: list[hotswap_pb2.OutcomeBatch] = []

    async def send(batch: hotswap_pb2.OutcomeBatch) -> None:
        sent.append(batch)

    outcomes.start_sending(send)
    await outcomes.close()  # sends what is waiting
    (outcome,) = [o for batch in sent for o in batch.outcomes]
    assert (outcome.split_id, outcome.failed, outcome.ttft_ms) == ("ab-1", False, 0.0)
    assert outcome.latency_ms >= 150


async def test_a_prompt_too_long_for_every_window_fails_with_the_first_refusal() -> None:
    """The fallback's window is no larger than the refusing model's: it is passed over, and
    the call fails with the refusal itself, not the gateway's note on the model passed over."""
    refusal = ContextLengthExceeded("the prompt does not fit 4096 tokens")
    engine = ScriptedEngine((MODEL, "scripted/same"), fail_with=refusal)
    host = BackendHost([engine])
    await host.start()
    pool = BackendPool()
    pool.add_in_process(ENDPOINT, host)
    view = CatalogView()
    for revision, entry in enumerate(engine.models(), 1):
        entry.deployments.add(
            backend="scripted", endpoint=ENDPOINT, health=common_pb2.HEALTH_STATUS_HEALTHY
        )
        entry.health = common_pb2.HEALTH_STATUS_HEALTHY
        _upsert(view, entry, revision)
    core = GatewayCore(view, pool)
    request = _request()
    request.fallback_models.append("scripted/same")
    error = await _failure(core, request)
    assert (type(error), error.message) == (ContextLengthExceeded, refusal.message)
    assert [model_id for model_id, _, _ in engine.calls] == [MODEL]  # the other passed over
