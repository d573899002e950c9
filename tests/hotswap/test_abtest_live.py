"""A/B tests and canary swaps on a running stack: the gateway splits, reports, and the
hot-swap service decides.

Registry, hot-swap, gateway and an openai_compat backend in front of a fake
OpenAI upstream (`FakeUpstream.echo_model`: each answer names its model)
serving ``model-a`` and ``model-b``; the fake makes a model slower
(`delays_s`) or fail a share of its requests with OpenAI's 500 error body
(`failure_rates`). Calls go through the gateway's GenerateStream.
"""

from __future__ import annotations

import asyncio

import grpc
from backends.openai_compat.openai_fake import FakeUpstream
from conftest import StackFactory

from modelyard.assembly import Stack
from modelyard.config import parse_config
from modelyard_client.v1 import gateway_pb2, gateway_pb2_grpc, hotswap_pb2, hotswap_pb2_grpc

ROLES = ("registry", "hotswap", "gateway", "backend-openai-compat")
A, B = "custom/model-a", "custom/model-b"
ALIAS = "chat-default"
Status = hotswap_pb2.SwapStatus


async def _stack(make_stack: StackFactory, upstream: FakeUpstream, hot_swap: str = "") -> Stack:
    config = parse_config(
        f"""
model_system:
  hot_swap: {{grace_period_ms: 100, validation_timeout_ms: 3000, routes: {{{ALIAS}: {A}}}
              {hot_swap}}}
  backends:
    custom: {{kind: openai_compat, endpoint: "{upstream.url}"}}
"""
    )
    return await make_stack(roles=ROLES, config=config)


def _request(n: int) -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=ALIAS, request_id=f"call-{n}")
    request.input.text = "hi"
    request.params.max_tokens = 8
    return request


async def _call(gateway: gateway_pb2_grpc.GatewayServiceAsyncStub, n: int) -> str:
    """One streamed call; the model that served it, or "failed"."""
    try:
        chunks = [c async for c in gateway.GenerateStream(_request(n), timeout=10)]
    except grpc.aio.AioRpcError:
        return "failed"
    return chunks[0].model_id


async def _start(
    hotswap: hotswap_pb2_grpc.HotSwapServiceAsyncStub, metric: str, min_samples_per_arm: int = 0
) -> hotswap_pb2.ABTest:
    """An A/B test of model-a ("a") against model-b ("b"), half the calls each."""
    request = hotswap_pb2.StartABTestRequest(
        alias=ALIAS,
        arms=[
            hotswap_pb2.ABArm(name="a", model_id=A, weight=0.5),
            hotswap_pb2.ABArm(name="b", model_id=B, weight=0.5),
        ],
        metric=metric,
        min_samples_per_arm=min_samples_per_arm,
    )
    return await hotswap.StartABTest(request, timeout=5)


async def _split_seen(stack: Stack, split_id: str) -> None:
    """Until the gateway's copy of the route table shows the split (or its end, for "")."""
    assert stack.route_view is not None
    async with asyncio.timeout(5):
        while True:
            route = stack.route_view.for_alias(ALIAS)
            if route is not None and route.split.id == split_id:
                return
            await asyncio.sleep(0.01)


async def test_a_slower_arm_loses_early_and_every_call_then_goes_to_the_winner(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    upstream.delays_s["model-b"] = 0.02  # 20 ms slower than model-a
    stack = await _stack(make_stack, upstream)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        hotswap = hotswap_pb2_grpc.HotSwapServiceStub(channel)
        test = await _start(hotswap, metric="latency", min_samples_per_arm=20)
        await _split_seen(stack, test.id)
        served: list[str] = []
        while len(served) < 600:
            served += await asyncio.gather(*(_call(gateway, len(served) + i) for i in range(4)))
            if not (await hotswap.GetABTest(hotswap_pb2.GetABTestRequest(id=test.id))).running:
                break
        ended = await hotswap.GetABTest(hotswap_pb2.GetABTestRequest(id=test.id))
        assert "failed" not in served
        assert {A, B} <= set(served)  # both arms served
        assert (ended.running, ended.winner) == (False, "a"), ended
        assert ended.confidence >= 0.95
        result = {r.name: r for r in ended.results}
        assert result["b"].latency_ms_p50 - result["a"].latency_ms_p50 > 15
        decided_on = result["a"].requests + result["b"].requests
        assert decided_on <= len(served)
        # Early: the arms' figures decided it, on fewer calls than the loop's budget. Counted
        # on the figures the verdict read, not the calls served: those go on while the
        # outcomes' batches reach the hot-swap service (more of them on a loaded machine).
        assert decided_on < 300, decided_on
        await _split_seen(stack, "")
        after = [await _call(gateway, 1000 + i) for i in range(20)]
    assert set(after) == {A}  # the split ended: the alias's model serves every call


async def test_feedback_is_counted_on_the_arm_that_served_the_call(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    stack = await _stack(make_stack, upstream)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        hotswap = hotswap_pb2_grpc.HotSwapServiceStub(channel)
        test = await _start(hotswap, metric="score")
        await _split_seen(stack, test.id)
        arm_of = {A: "a", B: "b"}
        for n in range(20):
            model = await _call(gateway, n)
            answer = await hotswap.Feedback(
                hotswap_pb2.FeedbackRequest(request_id=f"call-{n}", score=1.0), timeout=5
            )
            assert (answer.ab_test_id, answer.arm) == (test.id, arm_of[model])
        got = await hotswap.GetABTest(hotswap_pb2.GetABTestRequest(id=test.id))
        assert sum(r.scores for r in got.results) == 20
        assert all(r.scores == r.requests for r in got.results)


async def _canary(
    make_stack: StackFactory, upstream: FakeUpstream, failure_rate: float
) -> tuple[Status, list[str]]:
    stack = await _stack(
        make_stack,
        upstream,
        ", canary: {steps: [20, 50, 100], step_requests: 30, step_ms: 0}",
    )
    served: list[str] = []
    async with grpc.aio.insecure_channel(stack.address) as channel:
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        hotswap = hotswap_pb2_grpc.HotSwapServiceStub(channel)
        swap = await hotswap.Swap(
            hotswap_pb2.SwapRequest(alias=ALIAS, target_model_id=B, canary=True), timeout=5
        )
        await _split_seen(stack, swap.swap_id)
        upstream.failure_rates["model-b"] = failure_rate  # after its validation passed
        status = swap
        while status.phase not in (
            Status.PHASE_DONE,
            Status.PHASE_ROLLED_BACK,
            Status.PHASE_FAILED,
        ):
            served += await asyncio.gather(*(_call(gateway, len(served) + i) for i in range(4)))
            status = await hotswap.GetSwap(hotswap_pb2.GetSwapRequest(swap_id=swap.swap_id))
            assert len(served) < 3000, status
        route = await hotswap.GetRoute(hotswap_pb2.GetRouteRequest(alias=ALIAS))
        assert not route.HasField("split")
    return status, served


async def test_a_canary_failing_30_percent_is_rolled_back_on_its_own(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    status, served = await _canary(make_stack, upstream, failure_rate=0.3)
    assert status.phase == Status.PHASE_ROLLED_BACK
    step = status.steps[-1]
    assert (step.percent, step.decision) == (20, "rollback")
    assert step.new_requests >= 30 and step.new_error_rate > 0.1
    assert step.old_error_rate == 0
    assert status.error == step.reason
    # Only the canary's share of calls can have failed for their callers (a failed call
    # to the new version is retried, unless its circuit opened), while the canary
    # counts each first attempt's failure.
    assert served.count("failed") < len(served) * 0.2


async def test_a_healthy_canary_moves_every_call_step_by_step(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    status, served = await _canary(make_stack, upstream, failure_rate=0.0)
    assert status.phase == Status.PHASE_DONE
    assert [(s.percent, s.decision) for s in status.steps] == [(20, "advance"), (50, "advance")]
    assert "failed" not in served
