"""A load with forced retries, fallbacks, a hedge, an ejection and a split alias through a
real stack (registry, hot-swap, gateway, the openai_compat engine against the fake OpenAI
upstream on 127.0.0.1): the scrape at /metrics counts exactly those events, and healthy
calls add none."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from backends.openai_compat.openai_fake import FakeUpstream
from conftest import StackFactory
from meters.test_gateway_metrics import _samples, _scrape, _value

from modelyard.assembly import Stack
from modelyard.config import parse_config
from modelyard_client.v1 import gateway_pb2, gateway_pb2_grpc, hotswap_pb2, hotswap_pb2_grpc

FAILING, HEALTHY, ARM = "custom/model-a", "custom/model-b", "custom/model-d"
SLOW, HEDGE = "slow/model-c", "slow/model-b"
SPLITS = 6  # calls to the split alias


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    fake = FakeUpstream(models=["model-a", "model-b", "model-c", "model-d"])
    fake.echo_model()
    fake.failure_rates["model-a"] = 1.0  # every request answered 500
    await fake.start()
    yield fake
    await fake.stop()


async def _stack(make_stack: StackFactory, upstream: FakeUpstream) -> Stack:
    # Two backends at the one fake, so the hedge's retry budget is not the retries'.
    config = parse_config(
        f"""
model_system:
  gateway: {{circuit: {{consecutive_failures: 2}}}}
  backends:
    custom: {{kind: openai_compat, endpoint: "{upstream.url}", max_retries: 1}}
    slow:
      kind: openai_compat
      endpoint: "{upstream.url}"
      max_retries: 0
      model_profiles: {{model-c: {{hedge_delay_ms: 100}}}}
  hot_swap: {{routes: {{chat: {HEALTHY}}}}}
"""
    )
    return await make_stack(
        roles=("registry", "hotswap", "gateway", "backend-openai-compat"),
        config=config,
        metrics_listen="127.0.0.1:0",
    )


def _request(model: str, *fallbacks: str) -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=model, fallback_models=fallbacks, no_cache=True)
    request.input.text = "hi"
    request.params.max_tokens = 8
    return request


async def test_forced_events_are_counted_exactly_and_healthy_calls_add_none(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    stack = await _stack(make_stack, upstream)
    assert stack.metrics_listener is not None
    url = stack.metrics_listener.url
    async with grpc.aio.insecure_channel(stack.address) as channel:
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        hotswap = hotswap_pb2_grpc.HotSwapServiceStub(channel)
        for _ in range(3):  # healthy: nothing of the five is recorded
            answer = await gateway.Generate(_request(HEALTHY), timeout=10)
            assert answer.model_id == HEALTHY
        healthy = _samples(await _scrape(url))
        for name in ("retries", "fallbacks", "hedges", "ejections", "ab_assignments"):
            assert _value(healthy, f"modelyard_{name}_total") == 0, name

        # model-a fails twice (its one retry included), which opens its circuit; model-b answers.
        answer = await gateway.Generate(_request(FAILING, HEALTHY), timeout=10)
        assert answer.model_id == HEALTHY
        assert [b["model"] for b in upstream.bodies].count("model-a") == 2

        # model-c is late with its first piece: hedged on model-b, which answers.
        upstream.delays_s["model-c"] = 2.0
        stream = gateway.GenerateStream(_request(SLOW, HEDGE), timeout=10)
        chunks = [chunk async for chunk in stream]
        assert chunks[0].model_id == HEDGE

        test = await hotswap.StartABTest(
            hotswap_pb2.StartABTestRequest(
                alias="chat",
                arms=[
                    hotswap_pb2.ABArm(name="control", model_id=HEALTHY, weight=0.5),
                    hotswap_pb2.ABArm(name="treatment", model_id=ARM, weight=0.5),
                ],
                min_samples_per_arm=1000,  # it keeps running through the load
            ),
            timeout=10,
        )
        assert stack.route_view is not None
        for _ in range(500):  # the split reaches the gateway's route copy by WatchRoutes
            if "chat" in stack.route_view.splits:
                break
            await asyncio.sleep(0.02)
        assert "chat" in stack.route_view.splits
        served: dict[str, int] = {}
        for _ in range(SPLITS):
            answer = await gateway.Generate(_request("chat"), timeout=10)
            served[answer.model_id] = served.get(answer.model_id, 0) + 1

    samples = _samples(await _scrape(url))
    model = "gen_ai_request_model"
    assert _value(samples, "modelyard_retries_total") == 1
    assert _value(samples, "modelyard_retries_total", **{model: FAILING}) == 1
    assert _value(samples, "modelyard_fallbacks_total") == 1
    fallbacks = _value(
        samples,
        "modelyard_fallbacks_total",
        **{model: FAILING, "modelyard_fallback_model": HEALTHY},
    )
    assert fallbacks == 1
    assert _value(samples, "modelyard_hedges_total") == 1
    hedges = _value(
        samples, "modelyard_hedges_total", **{model: SLOW, "modelyard_hedge_model": HEDGE}
    )
    assert hedges == 1
    assert _value(samples, "modelyard_ejections_total") == 1
    ejections = _value(
        samples,
        "modelyard_ejections_total",
        **{model: FAILING, "modelyard_ejection_cause": "circuit"},
    )
    assert ejections == 1
    assert _value(samples, "modelyard_ab_assignments_total") == SPLITS
    for model_id, arm in ((HEALTHY, "control"), (ARM, "treatment")):
        assigned = _value(
            samples,
            "modelyard_ab_assignments_total",
            **{model: model_id, "modelyard_split_id": test.id, "modelyard_split_arm": arm},
        )
        assert assigned == served.get(model_id, 0)
