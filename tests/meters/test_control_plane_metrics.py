"""The counters beside the GenAI instruments: response cache lookups, swap phases, and
refusals by reason (a provider's rate limit: QUOTA_EXCEEDED), through real stacks."""

from __future__ import annotations

import aiohttp
import grpc
import pytest
from backends.openai_compat.openai_fake import FakeUpstream
from conftest import StackFactory
from prometheus_client.parser import text_string_to_metric_families

from modelyard.assembly.settings import limiter_settings
from modelyard.config import parse_config
from modelyard_client.v1 import gateway_pb2, gateway_pb2_grpc, hotswap_pb2, hotswap_pb2_grpc

A, B = "custom/model-a", "custom/model-b"
ALIAS = "chat-default"


async def _counts(url: str, name: str, label: str, **only: str) -> dict[str, float]:
    """`name`'s samples (those with the labels `only`) summed by the value of `label`."""
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        text = await response.text()
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and only.items() <= sample.labels.items():
                value = sample.labels.get(label, "")
                counts[value] = counts.get(value, 0.0) + sample.value
    return counts


def _request(model: str) -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=model)
    request.input.text = "hi"
    request.params.max_tokens = 8
    request.params.temperature = 0
    return request


async def test_cache_lookups_count_hits_and_misses(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    config = parse_config(
        "model_system:\n  gateway: {cache: {enabled: true}}\n"
        f"  backends:\n    custom: {{kind: openai_compat, endpoint: '{upstream.url}'}}\n"
    )
    stack = await make_stack(
        roles=("registry", "gateway", "backend-openai-compat"),
        config=config,
        metrics_listen="127.0.0.1:0",
    )
    assert stack.metrics_listener is not None
    async with grpc.aio.insecure_channel(stack.address) as channel:
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        first = await gateway.Generate(_request(A))
        again = await gateway.Generate(_request(A))
        other = await gateway.Generate(_request(B))
    assert (first.cached, again.cached, other.cached) == (False, True, False)
    lookups = await _counts(
        stack.metrics_listener.url, "modelyard_cache_lookups_total", "modelyard_cache_result"
    )
    assert lookups == {"hit": 1.0, "miss": 2.0}


async def test_each_phase_a_swap_enters_is_counted_once(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    config = parse_config(
        f"model_system:\n  hot_swap: {{grace_period_ms: 100, routes: {{{ALIAS}: {A}}}}}\n"
        f"  backends:\n    custom: {{kind: openai_compat, endpoint: '{upstream.url}'}}\n"
    )
    stack = await make_stack(
        roles=("registry", "hotswap", "gateway", "backend-openai-compat"),
        config=config,
        metrics_listen="127.0.0.1:0",
    )
    assert stack.metrics_listener is not None
    async with grpc.aio.insecure_channel(stack.address) as channel:
        hotswap = hotswap_pb2_grpc.HotSwapServiceStub(channel)
        first = await hotswap.Swap(hotswap_pb2.SwapRequest(alias=ALIAS, target_model_id=B))
        async for status in hotswap.WatchSwap(hotswap_pb2.GetSwapRequest(swap_id=first.swap_id)):
            last = status
    assert last.phase == hotswap_pb2.SwapStatus.PHASE_DONE
    phases = await _counts(
        stack.metrics_listener.url, "modelyard_swap_phases_total", "modelyard_swap_phase"
    )
    assert phases == {
        "preparing": 1.0,
        "warming": 1.0,
        "validating": 1.0,
        "switched": 1.0,
        "draining": 1.0,
        "done": 1.0,
    }


async def test_refusals_are_counted_by_their_reason(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    config = parse_config(
        "model_system:\n"
        "  rate_limits: {per_provider: {custom: {requests_per_minute: 1}}}\n"
        f"  backends:\n    custom: {{kind: openai_compat, endpoint: '{upstream.url}'}}\n"
    )
    stack = await make_stack(
        roles=("registry", "gateway", "backend-openai-compat"),
        config=config,
        limiter=limiter_settings(config, {}),
        metrics_listen="127.0.0.1:0",
    )
    assert stack.metrics_listener is not None
    async with grpc.aio.insecure_channel(stack.address) as channel:
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        await gateway.Generate(_request(A))
        for _ in range(2):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await gateway.Generate(_request(A))
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    reasons = await _counts(
        stack.metrics_listener.url,
        "modelyard_requests_total",
        "error_type",
        rpc_method="modelyard.v1.GatewayService/Generate",
    )
    assert reasons == {"": 1.0, "QUOTA_EXCEEDED": 2.0}  # the one admitted, the two refused
