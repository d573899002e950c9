"""Two in-process gateways whose limits live in one Redis share them, through gRPC."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from ratelimit.conftest import GenerateCall, StartGateway
from support.scripted_engine import ScriptedEngine

from modelyard.ratelimit import LimiterConfig, QuotaConfig, Rates
from modelyard_client.errors import RATE_LIMIT_SCOPES_KEY
from modelyard_client.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc


def _config(redis_url: str, quotas: QuotaConfig | None = None) -> LimiterConfig:
    return LimiterConfig(quotas=quotas or QuotaConfig(), redis_url=redis_url, redis_timeout_s=5)


async def _two_gateways(
    start_gateway: StartGateway, config: LimiterConfig, **engine_args: Any
) -> tuple[str, str]:
    first, _ = await start_gateway(config, ScriptedEngine(**engine_args))
    second, _ = await start_gateway(config, ScriptedEngine(**engine_args))
    return first.address, second.address


async def test_two_gateways_share_one_requests_per_minute_limit(
    redis_url: str, start_gateway: StartGateway, call: GenerateCall
) -> None:
    limits = common_pb2.RateLimits(requests_per_minute=5)
    a, b = await _two_gateways(start_gateway, _config(redis_url), limits=limits)
    answers = [await call(address) for address in (a, b, a, b, a)]
    assert [x.code for x in answers] == [grpc.StatusCode.OK] * 5
    for address in (b, a):
        refused = await call(address)
        assert refused.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "model 'scripted/echo' requests_per_minute=5" in refused.details
        assert 9_000 <= refused.retry_after_ms <= 12_000  # one request refills every 12 s
        assert refused.trailers[RATE_LIMIT_SCOPES_KEY] == "model:scripted/echo"


async def test_tokens_are_reserved_and_refunded_in_redis_across_gateways(
    redis_url: str, start_gateway: StartGateway, call: GenerateCall
) -> None:
    limits = common_pb2.RateLimits(tokens_per_minute=100)
    a, b = await _two_gateways(start_gateway, _config(redis_url), limits=limits)
    # Each reserves 1 + 60 tokens and uses 6: without refunds the second would be refused.
    for address in (a, b, a, b, a):
        assert (await call(address, max_tokens=60)).code == grpc.StatusCode.OK
    refused = await call(b, max_tokens=99)
    assert refused.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "tokens_per_minute=100" in refused.details


async def test_each_api_key_has_its_own_budget_on_every_gateway(
    redis_url: str, start_gateway: StartGateway, call: GenerateCall
) -> None:
    config = _config(redis_url, QuotaConfig(per_key=Rates(requests_per_minute=2)))
    a, b = await _two_gateways(start_gateway, config)
    alice = (("x-api-key", "alice-key-0001"),)
    bob = (("authorization", "Bearer bob-key-0002"),)
    assert (await call(a, metadata=alice)).code == grpc.StatusCode.OK
    assert (await call(b, metadata=alice)).code == grpc.StatusCode.OK
    refused = await call(a, metadata=alice)
    assert refused.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "api key '...0001' requests_per_minute=2" in refused.details
    assert "alice" not in refused.details
    # bob's budget is untouched by alice's, and so is the anonymous one.
    assert (await call(b, metadata=bob)).code == grpc.StatusCode.OK
    assert (await call(a, metadata=bob)).code == grpc.StatusCode.OK
    assert (await call(b, metadata=bob)).code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (await call(a)).code == grpc.StatusCode.OK


async def test_a_provider_limit_spans_its_models_and_gateways(
    redis_url: str, start_gateway: StartGateway, call: GenerateCall
) -> None:
    config = _config(
        redis_url, QuotaConfig(per_provider={"scripted": Rates(requests_per_minute=3)})
    )
    models = ("scripted/a", "scripted/b")
    a, b = await _two_gateways(start_gateway, config, model_ids=models)
    for address, model in ((a, "scripted/a"), (b, "scripted/b"), (a, "scripted/b")):
        assert (await call(address, model)).code == grpc.StatusCode.OK
    refused = await call(b, "scripted/a")
    assert refused.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "provider 'scripted' requests_per_minute=3" in refused.details
    assert refused.trailers[RATE_LIMIT_SCOPES_KEY] == "provider:scripted"


async def test_a_refused_request_falls_back_to_the_next_model(
    redis_url: str, start_gateway: StartGateway, call: GenerateCall
) -> None:
    limited = ScriptedEngine(
        ("scripted/limited",), limits=common_pb2.RateLimits(requests_per_minute=1)
    )
    spare = ScriptedEngine(("scripted/spare",), pieces=("spare",))
    stack, _ = await start_gateway(_config(redis_url), limited, spare)
    assert (await call(stack.address, "scripted/limited")).code == grpc.StatusCode.OK
    request = gateway_pb2.GenerateRequest(
        model="scripted/limited", fallback_models=["scripted/spare"]
    )
    request.input.text = "hi"
    async with grpc.aio.insecure_channel(stack.address) as channel:
        response = await gateway_pb2_grpc.GatewayServiceStub(channel).Generate(request, timeout=30)
    assert (response.model_id, response.text) == ("scripted/spare", "spare")


async def test_a_streaming_caller_is_limited_by_its_api_key(
    redis_url: str, start_gateway: StartGateway
) -> None:
    config = _config(redis_url, QuotaConfig(per_key=Rates(requests_per_minute=1)))
    stack, _ = await start_gateway(config, ScriptedEngine())
    request = gateway_pb2.GenerateRequest(model="scripted/echo")
    request.input.text = "hi"
    metadata = (("authorization", "Bearer stream-key-0003"),)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        chunks = [c async for c in stub.GenerateStream(request, metadata=metadata, timeout=30)]
        assert "".join(c.text for c in chunks) == "hello world"
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            async for _ in stub.GenerateStream(request, metadata=metadata, timeout=30):
                pass
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "api key '...0003' requests_per_minute=1" in (refused.value.details() or "")
