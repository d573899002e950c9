"""A burst beyond what an upstream (or the gateway) takes is shed with RESOURCE_EXHAUSTED.

2,000 GenerateStream calls at once against a stack whose upstream answers
slowly (0.5 s each) and runs at most 32 at a time with 64 waiting: every call
ends with its whole answer or with RESOURCE_EXHAUSTED carrying a retry delay
(reason OVERLOADED), none with CANCELLED or anything else, and the upstream
never sees more than 32 at once. Before, calls waited in aiohttp's unbounded
pool queue, and gRPC cancelled the ones its server had not yet taken past
1,000 waiting: a bare CANCELLED, no handler reached, nothing logged.

The gateway's own bound (``gateway.max_in_flight``) refuses the same way,
and a fallback chain does not turn that refusal into UNAVAILABLE: no other
model would find room in a full gateway.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter

import grpc
import pytest
from backends.openai_compat.openai_fake import STACK_ROLES, FakeUpstream, chunk, request
from conftest import StackFactory
from support.grpc_trailers import retry_delay_s

from modelyard.backends.openai_compat.engine import OpenAICompatEngine
from modelyard.config import ModelyardConfig, parse_config
from modelyard_client.errors import Overloaded, error_from_rpc
from modelyard_client.v1 import common_pb2, gateway_pb2_grpc

CALLS = 2000
MAX_CONCURRENCY = 32
MAX_QUEUE = 64
ANSWER_S = 0.5  # how long the upstream takes over each answer


async def test_a_burst_is_answered_or_shed_with_a_retry_delay_and_never_dropped(
    upstream: FakeUpstream, make_stack: StackFactory
) -> None:
    upstream.stream(
        [chunk("", role="assistant"), chunk("Hello"), chunk(finish_reason="stop")],
        delay_s=ANSWER_S,
    )
    config = _config(upstream.url, f"max_concurrency: {MAX_CONCURRENCY}, max_queue: {MAX_QUEUE}")
    stack = await make_stack(roles=STACK_ROLES, config=config)
    outcomes: Counter[str] = Counter()
    shed_after_s: list[float] = []

    async def call(stub: gateway_pb2_grpc.GatewayServiceAsyncStub) -> None:
        started = time.perf_counter()
        texts, finish = [], common_pb2.FINISH_REASON_UNSPECIFIED
        try:
            async for c in stub.GenerateStream(request(), timeout=60):
                texts.append(c.text)
                finish = c.finish_reason or finish
        except grpc.aio.AioRpcError as exc:
            err = error_from_rpc(exc)
            delay = retry_delay_s(exc)
            if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and delay and delay > 0:
                shed_after_s.append(time.perf_counter() - started)
                outcomes[f"RESOURCE_EXHAUSTED {err.reason} with RetryInfo"] += 1
            else:
                outcomes[f"{exc.code().name} {err.reason}: {err.message[:80]}"] += 1
            return
        answered = "".join(texts) == "Hello" and finish == common_pb2.FINISH_REASON_STOP
        outcomes["answered" if answered else f"wrong answer {texts} {finish}"] += 1

    started = time.perf_counter()
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        await asyncio.gather(*(call(stub) for _ in range(CALLS)))
    wall_s = time.perf_counter() - started

    answered = outcomes.pop("answered", 0)
    shed = outcomes.pop("RESOURCE_EXHAUSTED OVERLOADED with RetryInfo", 0)
    print(
        f"\n{CALLS} calls in {wall_s:.1f}s: {answered} answered, {shed} shed "
        f"(after {statistics.median(shed_after_s) * 1000:.0f} ms median, "
        f"{max(shed_after_s) * 1000:.0f} ms at most, client side), "
        f"at most {upstream.most_in_flight} at once at the upstream"
    )
    assert outcomes == {}  # nothing else: no CANCELLED, no other code, no wrong answer
    assert answered + shed == CALLS
    assert answered >= MAX_CONCURRENCY + MAX_QUEUE  # the first slots and the queue filled
    assert shed > 0
    assert upstream.most_in_flight == MAX_CONCURRENCY
    assert len(upstream.bodies) == answered  # a shed call never reached the upstream
    assert stack.host is not None
    (engine,) = stack.host.engines
    assert isinstance(engine, OpenAICompatEngine)
    assert engine.admission.shed == shed
    assert (engine.admission.running, engine.admission.waiting) == (0, 0)


def _config(url: str, limits: str, gateway: str = "{}") -> ModelyardConfig:
    return parse_config(
        f"""
model_system:
  gateway: {gateway}
  backends:
    custom: {{kind: openai_compat, endpoint: "{url}", {limits}}}
"""
    )


@pytest.mark.parametrize("fallback", [False, True], ids=["one-model", "fallback-chain"])
async def test_a_full_gateway_refuses_with_a_retry_delay_even_with_fallbacks(
    upstream: FakeUpstream, make_stack: StackFactory, fallback: bool
) -> None:
    upstream.stream([chunk("Hello"), chunk(finish_reason="stop")], delay_s=0.5)
    config = _config(upstream.url, "max_concurrency: 8", gateway="{max_in_flight: 2}")
    stack = await make_stack(roles=STACK_ROLES, config=config)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        held = [asyncio.ensure_future(stub.Generate(request(), timeout=10)) for _ in range(2)]
        await asyncio.wait_for(upstream.until_in_flight(2), 10)  # the gateway's slots: taken
        extra = request()
        if fallback:
            extra.fallback_models.append("custom/fake-model-2")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Generate(extra, timeout=10)
        answers = await asyncio.gather(*held)
    assert [a.text for a in answers] == ["Hello", "Hello"]
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    err = error_from_rpc(info.value)
    assert isinstance(err, Overloaded)
    assert err.scope == "gateway"
    assert retry_delay_s(info.value) == err.retry_after_s == 1.0  # nothing finished yet
    assert err.message == (
        "this gateway is at capacity: 2 call(s) running and 0 waiting "
        "(gateway.max_in_flight=2); retry after 1.000s"
    )
    assert len(upstream.bodies) == 2
