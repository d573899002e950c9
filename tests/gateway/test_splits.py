"""Splits through the gateway: an alias whose route carries a split sends each call to one arm.

A real stack (registry, hot-swap, gateway, an openai_compat backend) in front
of a fake OpenAI upstream serving ``model-a`` and ``model-b``, each answer
naming its model. The split is written straight into the stack's route table
(`RouteTable.set_route(..., split=...)`) and reaches the gateway through
`WatchRoutes` like any route change. The hot-swap servicer is a subclass
that keeps every `ArmOutcome` the gateway reports before handing the batch on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import grpc
import pytest
from backends.openai_compat.openai_fake import FakeUpstream, openai_error
from conftest import StackFactory

import modelyard.assembly.stack as stack_module
from modelyard._native import assign_arm
from modelyard.assembly import Stack
from modelyard.config import ModelyardConfig, parse_config
from modelyard.gateway.route_view import RouteView, SplitPlan
from modelyard.hotswap.servicer import HotSwapServicer
from modelyard.percentiles import nearest_rank
from modelyard.ratelimit.config import LimiterConfig
from modelyard.ratelimit.plan import QuotaConfig, Rates
from modelyard_client.v1 import gateway_pb2, gateway_pb2_grpc, hotswap_pb2

ROLES = ("registry", "hotswap", "gateway", "backend-openai-compat")
A, B = "custom/model-a", "custom/model-b"
BROKEN = "broken/model-x"  # served by an upstream that answers every chat with a 500
ALIAS = "chat-ab"
Sticky = hotswap_pb2.StickyBy
Ctx = grpc.aio.ServicerContext[Any, Any]
Outcomes = list[hotswap_pb2.ArmOutcome]


@pytest.fixture
def reported(monkeypatch: pytest.MonkeyPatch) -> Outcomes:
    """Every outcome the stacks' hot-swap services receive, in order."""
    received: Outcomes = []

    class KeepingOutcomes(HotSwapServicer):
        async def ReportOutcomes(
            self, request: hotswap_pb2.OutcomeBatch, context: Ctx
        ) -> hotswap_pb2.ReportOutcomesResponse:
            received.extend(request.outcomes)
            return await super().ReportOutcomes(request, context)

    monkeypatch.setattr(stack_module, "HotSwapServicer", KeepingOutcomes)
    return received


@pytest.fixture
async def broken() -> AsyncIterator[FakeUpstream]:
    fake = FakeUpstream(models=["model-x"])
    fake.fail(500, openai_error("the server had an error", "server_error"))
    await fake.start()
    yield fake
    await fake.stop()


def _config(url: str, broken_url: str = "") -> ModelyardConfig:
    second = (
        f'\n    broken: {{kind: openai_compat, endpoint: "{broken_url}"}}' if broken_url else ""
    )
    return parse_config(
        f"""
model_system:
  hot_swap: {{routes: {{{ALIAS}: {A}}}}}
  backends:
    custom: {{kind: openai_compat, endpoint: "{url}"}}{second}
"""
    )


async def _stack(
    make_stack: StackFactory, upstream: FakeUpstream, broken_url: str = "", **settings: Any
) -> Stack:
    return await make_stack(roles=ROLES, config=_config(upstream.url, broken_url), **settings)


async def _until(condition: Callable[[], bool], what: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout_s}s: {what}"
        await asyncio.sleep(0.01)


async def _split(
    stack: Stack,
    *arms: tuple[str, str, float],
    sticky_by: int = Sticky.STICKY_BY_UNSPECIFIED,
    split_id: str = "ab-1",
) -> None:
    """Put a split of (name, model, weight) arms on ALIAS; return once the gateway sees it."""
    assert stack.routes is not None and stack.route_view is not None
    split = hotswap_pb2.Split(
        id=split_id,
        kind=hotswap_pb2.Split.KIND_AB_TEST,
        arms=[hotswap_pb2.ABArm(name=n, model_id=m, weight=w) for n, m, w in arms],
        sticky_by=sticky_by,  # type: ignore[arg-type]
    )
    stored = stack.routes.set_route(ALIAS, 0, A, split=split)
    view = stack.route_view
    await _until(lambda: view.revision >= stored.revision, "the gateway sees the split")


def _request(i: int = 0, **fields: Any) -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=ALIAS, request_id=f"call-{i}", **fields)
    request.input.text = "hi"
    request.params.max_tokens = 8
    return request


async def _served_by(
    stack: Stack,
    requests: Sequence[gateway_pb2.GenerateRequest],
    api_keys: Sequence[str] = (),
) -> list[str]:
    """The model that answered each request (Generate, 32 at a time), in order."""
    gate = asyncio.Semaphore(32)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)

        async def one(i: int, request: gateway_pb2.GenerateRequest) -> str:
            metadata = (("x-api-key", api_keys[i]),) if api_keys else None
            async with gate:
                response = await stub.Generate(request, timeout=10, metadata=metadata)
            return response.model_id

        return list(await asyncio.gather(*(one(i, r) for i, r in enumerate(requests))))


async def _reported_count(reported: Outcomes, count: int) -> None:
    await _until(lambda: len(reported) >= count, f"{count} outcomes reported")
    await asyncio.sleep(0.15)  # one more send interval: nothing beyond `count` comes
    assert len(reported) == count


async def test_a_50_50_split_sends_about_half_the_calls_to_each_arm_and_reports_each(
    make_stack: StackFactory, upstream: FakeUpstream, reported: Outcomes
) -> None:
    stack = await _stack(make_stack, upstream)
    await _split(stack, ("a", A, 0.5), ("b", B, 0.5))
    served = await _served_by(stack, [_request(i) for i in range(400)])
    counts = Counter(served)
    assert set(counts) == {A, B}
    assert 150 <= counts[A] <= 250
    await _reported_count(reported, 400)
    by_request = {o.request_id: o for o in reported}
    arm_of = {A: "a", B: "b"}
    assert {f"call-{i}": arm_of[m] for i, m in enumerate(served)} == {
        rid: o.arm for rid, o in by_request.items()
    }
    assert {o.split_id for o in reported} == {"ab-1"}
    assert not any(o.failed for o in reported)
    assert all(o.latency_ms > 0 for o in reported)
    assert all(o.ttft_ms == 0 for o in reported)  # Generate: no pieces reach the caller


async def test_a_90_10_split_sends_about_a_tenth_to_the_small_arm(
    make_stack: StackFactory, upstream: FakeUpstream, reported: Outcomes
) -> None:
    stack = await _stack(make_stack, upstream)
    await _split(stack, ("control", A, 0.9), ("candidate", B, 0.1))
    counts = Counter(await _served_by(stack, [_request(i) for i in range(400)]))
    assert 20 <= counts[B] <= 60  # 40 expected
    assert counts[A] + counts[B] == 400


async def test_without_a_split_the_alias_is_served_by_its_route_and_nothing_is_reported(
    make_stack: StackFactory, upstream: FakeUpstream, reported: Outcomes
) -> None:
    stack = await _stack(make_stack, upstream)
    assert set(await _served_by(stack, [_request(i) for i in range(20)])) == {A}
    # A fallback alias under a split is served by its route's model, never split.
    await _split(stack, ("a", A, 0.0), ("b", B, 1.0))
    direct = _request(fallback_models=[ALIAS])
    direct.model = A
    assert await _served_by(stack, [direct]) == [A]
    await asyncio.sleep(0.25)
    assert reported == []


@pytest.mark.parametrize(
    "sticky_by", [Sticky.STICKY_BY_CONVERSATION, Sticky.STICKY_BY_API_KEY, Sticky.STICKY_BY_USER]
)
async def test_a_sticky_key_keeps_its_arm_while_different_keys_spread(
    make_stack: StackFactory, upstream: FakeUpstream, reported: Outcomes, sticky_by: int
) -> None:
    stack = await _stack(make_stack, upstream)
    await _split(stack, ("a", A, 0.5), ("b", B, 0.5), sticky_by=sticky_by)
    keys = [f"key-{k}" for k in range(12)]
    calls = [(key, i) for key in keys for i in range(20)]
    requests, api_keys = [], []
    for n, (key, _) in enumerate(calls):
        if sticky_by == Sticky.STICKY_BY_CONVERSATION:
            requests.append(_request(n, conversation_id=key))
        elif sticky_by == Sticky.STICKY_BY_USER:
            requests.append(_request(n, user=key))
        else:
            requests.append(_request(n))
        api_keys.append(key)
    served = await _served_by(stack, requests, api_keys)
    arms: dict[str, set[str]] = {}
    for (key, _), model in zip(calls, served, strict=True):
        arms.setdefault(key, set()).add(model)
    assert all(len(models) == 1 for models in arms.values()), arms
    assert set.union(*arms.values()) == {A, B}  # different keys, different arms
    # A call without its key is drawn on its request id: alone, so both arms take some.
    unkeyed = await _served_by(stack, [_request(1000 + i) for i in range(40)])
    assert set(unkeyed) == {A, B}


async def test_a_stream_running_when_the_split_moves_finishes_on_its_first_model(
    make_stack: StackFactory, upstream: FakeUpstream, reported: Outcomes
) -> None:
    upstream.echo_model(pieces=5, piece_delay_s=0.1)
    stack = await _stack(make_stack, upstream)
    await _split(stack, ("a", A, 1.0), ("b", B, 0.0))
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        running = stub.GenerateStream(_request(1), timeout=20)
        first = await running.read()
        assert isinstance(first, gateway_pb2.GenerateChunk)
        assert first.model_id == A
        await _split(stack, ("a", A, 0.0), ("b", B, 1.0))
        assert (await stub.Generate(_request(2), timeout=10)).model_id == B
        rest = []
        while isinstance(chunk := await running.read(), gateway_pb2.GenerateChunk):
            rest.append(chunk)
    assert first.text + "".join(c.text for c in rest) == "model-a;" * 5
    assert rest[-1].finish_reason != 0
    await _reported_count(reported, 2)
    streamed = next(o for o in reported if o.request_id == "call-1")
    assert (streamed.arm, streamed.failed) == ("a", False)
    assert 0 < streamed.ttft_ms < streamed.latency_ms
    assert streamed.latency_ms >= 400  # five pieces 100 ms apart
    unary = next(o for o in reported if o.request_id == "call-2")
    assert (unary.arm, unary.failed, unary.ttft_ms) == ("b", False, 0.0)


async def test_an_arm_whose_streams_are_cut_reports_them_failed(
    make_stack: StackFactory, upstream: FakeUpstream, reported: Outcomes
) -> None:
    upstream.echo_model(unfinished=frozenset({"model-b"}))  # no finish reason: truncated
    stack = await _stack(make_stack, upstream)
    await _split(stack, ("a", A, 0.5), ("b", B, 0.5))
    codes: dict[str, grpc.StatusCode] = {}
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        for i in range(40):
            try:
                async for _ in stub.GenerateStream(_request(i), timeout=10):
                    pass
                codes[f"call-{i}"] = grpc.StatusCode.OK
            except grpc.aio.AioRpcError as exc:
                codes[f"call-{i}"] = exc.code()
    await _reported_count(reported, 40)
    for outcome in reported:
        assert outcome.failed == (outcome.arm == "b")
        code = codes[outcome.request_id]
        if not outcome.failed:
            assert code == grpc.StatusCode.OK
        elif code == grpc.StatusCode.ABORTED:
            assert 0 < outcome.ttft_ms <= outcome.latency_ms  # b's pieces came, then no finish
        else:  # after 5 cuts b's circuit is open: refused unsent, still the arm's failure
            assert code == grpc.StatusCode.UNAVAILABLE
    assert {o.arm for o in reported} == {"a", "b"}
    assert grpc.StatusCode.ABORTED in codes.values()


async def test_an_arms_outcomes_are_the_gateways_own_figures_of_its_attempts(
    make_stack: StackFactory, upstream: FakeUpstream, reported: Outcomes
) -> None:
    # One measurement of each attempt: the arm outcomes the hot-swap service judges a
    # split on are the very latencies, first pieces and costs the gateway's tracker
    # keeps for selection, health and circuits (the same floats, not a second timing).
    upstream.echo_model(pieces=3, piece_delay_s=0.002)
    config = parse_config(
        f"""
model_system:
  hot_swap: {{routes: {{{ALIAS}: {A}}}}}
  backends:
    custom:
      kind: openai_compat
      endpoint: "{upstream.url}"
      model_profiles: {{model-b: {{usd_per_1m_output_tokens: 2.0, usd_per_request: 0.001}}}}
"""
    )
    stack = await make_stack(roles=ROLES, config=config)
    await _split(stack, ("a", A, 0.5), ("b", B, 0.5))
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        for i in range(30):
            async for _ in stub.GenerateStream(_request(i), timeout=10):
                pass
    await _reported_count(reported, 30)
    assert stack.performance is not None
    tracker = stack.performance.tracker
    for arm, model in (("a", A), ("b", B)):
        mine = [o for o in reported if o.arm == arm]
        assert mine and not any(o.failed for o in mine)
        figures = tracker.figures(model)
        assert figures.requests == len(mine)
        latencies = sorted(o.latency_ms for o in mine)
        ttfts = sorted(o.ttft_ms for o in mine)
        assert all(0 < t < lat for t, lat in zip(ttfts, latencies, strict=True))
        for q, got in ((50, figures.latency_ms_p50), (95, figures.latency_ms_p95)):
            assert got == nearest_rank(latencies, q)
        assert figures.ttft_ms_p50 == nearest_rank(ttfts, 50)
        assert figures.cost_per_request_usd == pytest.approx(
            sum(o.cost_usd for o in mine) / len(mine), rel=1e-12
        )
    assert all(o.cost_usd > 0.001 for o in reported if o.arm == "b")  # priced: per call + tokens
    assert all(o.cost_usd == 0 for o in reported if o.arm == "a")


async def test_an_arm_that_fails_is_reported_failed_though_a_fallback_served_the_call(
    make_stack: StackFactory,
    upstream: FakeUpstream,
    broken: FakeUpstream,
    reported: Outcomes,
) -> None:
    stack = await _stack(make_stack, upstream, broken.url)
    await _split(stack, ("good", A, 0.5), ("bad", BROKEN, 0.5))
    served = await _served_by(stack, [_request(i, fallback_models=[B]) for i in range(30)])
    await _reported_count(reported, 30)
    arm_of = {o.request_id: (o.arm, o.failed) for o in reported}
    for i, model in enumerate(served):
        # The bad arm's calls were answered by the fallback, and still count against it.
        assert arm_of[f"call-{i}"] == (("good", False) if model == A else ("bad", True))
    assert set(served) == {A, B}
    assert broken.bodies  # the bad arm's upstream was called


async def test_refused_and_cancelled_calls_are_not_reported(
    make_stack: StackFactory, upstream: FakeUpstream, reported: Outcomes
) -> None:
    upstream.echo_model(pieces=5, piece_delay_s=0.2)
    one_a_minute = LimiterConfig(quotas=QuotaConfig(per_key=Rates(requests_per_minute=1)))
    stack = await _stack(make_stack, upstream, limiter=one_a_minute)
    await _split(stack, ("a", A, 1.0), ("b", B, 0.0))
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        # The caller's rate limit: refused before any backend is called.
        await stub.Generate(_request(1), timeout=10, metadata=(("x-api-key", "k1"),))
        with pytest.raises(grpc.aio.AioRpcError) as limited:
            await stub.Generate(_request(2), timeout=10, metadata=(("x-api-key", "k1"),))
        assert limited.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # Invalid input: refused before any arm is drawn.
        with pytest.raises(grpc.aio.AioRpcError) as invalid:
            await stub.Generate(_request(3, user="u" * 129), timeout=10)
        assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # The caller goes away after the first piece.
        cancelled = stub.GenerateStream(_request(4), timeout=10, metadata=(("x-api-key", "k2"),))
        assert isinstance(await cancelled.read(), gateway_pb2.GenerateChunk)
        cancelled.cancel()
        await _until(lambda: upstream.in_flight == 0, "the upstream call ends")
        await asyncio.sleep(0.1)
        # The last call's outcome: everything recorded before it has been sent by then.
        await stub.Generate(_request(5), timeout=10, metadata=(("x-api-key", "k3"),))
    await _reported_count(reported, 2)
    assert [(o.request_id, o.failed) for o in reported] == [("call-1", False), ("call-5", False)]


async def test_a_user_longer_than_128_characters_is_refused_naming_the_field(
    make_stack: StackFactory, upstream: FakeUpstream, reported: Outcomes
) -> None:
    stack = await _stack(make_stack, upstream)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        assert (await stub.Generate(_request(1, user="u" * 128), timeout=10)).model_id == A
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Generate(_request(2, user="u" * 129), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "user is 129 characters long; the limit is 128"


def _change(route: hotswap_pb2.Route, revision: int) -> hotswap_pb2.RouteChange:
    return hotswap_pb2.RouteChange(
        kind=hotswap_pb2.RouteChange.KIND_UPSERTED, route=route, revision=revision
    )


def test_a_split_no_call_could_be_drawn_on_is_ignored_and_an_ended_one_removed() -> None:
    view = RouteView()
    view.apply(hotswap_pb2.RouteChange(kind=hotswap_pb2.RouteChange.KIND_SYNCED, revision=0))
    route = hotswap_pb2.Route(alias=ALIAS, model_id=A)
    route.split.id = "ab-1"
    route.split.arms.add(name="a", model_id=A, weight=0.0)
    route.split.arms.add(name="b", model_id=B, weight=0.0)
    view.apply(_change(route, 1))
    assert dict(view.splits) == {}  # every weight 0: the alias is served by its model
    route.split.arms[1].weight = 1.0
    view.apply(_change(route, 2))
    plan = view.splits[ALIAS]
    assert (plan.split_id, plan.names, plan.model_ids, plan.weights) == (
        "ab-1",
        ("a", "b"),
        (A, B),
        (0.0, 1.0),
    )
    assert plan.arm_for("anything") == 1
    route.ClearField("split")
    view.apply(_change(route, 3))
    assert dict(view.splits) == {}


def test_the_split_id_prefixes_the_sticky_key_so_two_splits_shuffle_keys_apart() -> None:
    plan = SplitPlan("ab-1", Sticky.STICKY_BY_USER, ("a", "b"), (A, B), (0.5, 0.5))
    other = dataclasses.replace(plan, split_id="ab-2")
    keys = [f"user-{i}" for i in range(200)]
    arms = [plan.arm_for(key) for key in keys]
    assert arms == [assign_arm(f"ab-1:{key}", [0.5, 0.5]) for key in keys]
    assert arms != [other.arm_for(key) for key in keys]
