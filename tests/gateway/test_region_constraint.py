"""`Constraints.region`: only models deployed there are chosen, only their deployments there
are called, and a model with none there fails over naming the region."""

from __future__ import annotations

import grpc
import pytest
from conftest import StackFactory
from support.scripted_engine import ScriptedEngine

from modelyard_client.v1 import (
    gateway_pb2,
    gateway_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
)


def _request(model: str = "", region: str = "eu", *fallbacks: str) -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=model, fallback_models=fallbacks)
    request.input.text = "hi"
    request.constraints.region = region
    return request


async def test_a_region_decides_the_model_chosen_the_fallback_taken_and_the_refusal(
    make_stack: StackFactory,
) -> None:
    us = ScriptedEngine(("s/us",), pieces=("from us",))
    eu = ScriptedEngine(("s/eu",), pieces=("from eu",))
    stack = await make_stack(roles=("registry", "gateway"), engines=[us, eu])
    async with grpc.aio.insecure_channel(stack.address) as channel:
        registry = registry_pb2_grpc.RegistryServiceStub(channel)
        # s/us is the clear favourite of the selector; each model is deployed in its region.
        for model_id, region, latency in (("s/us", "us", 10), ("s/eu", "eu", 500)):
            entry = await registry.GetModel(registry_pb2.GetModelRequest(id=model_id))
            entry.performance.latency_ms_p50 = latency
            for deployment in entry.deployments:
                deployment.region = region
            await registry.RegisterModel(
                registry_pb2.RegisterModelRequest(model=entry, upsert=True)
            )
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        for _ in range(200):  # until the gateway's live catalog has both regions
            reply = await gateway.Generate(_request())
            if reply.model_id == "s/eu":
                break
        assert (reply.model_id, reply.text) == ("s/eu", "from eu")
        # No region: the favourite.
        assert (await gateway.Generate(_request(region=""))).model_id == "s/us"
        # A named model with no deployment in the region gives way to its fallback.
        reply = await gateway.Generate(_request("s/us", "eu", "s/eu"))
        assert (reply.model_id, reply.text) == ("s/eu", "from eu")
        assert (await gateway.Generate(_request("s/us", "us", "s/eu"))).model_id == "s/us"
        # With no fallback, the refusal names the model and the region.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await gateway.Generate(_request("s/us", "eu"))
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "model 's/us' has no deployment in region 'eu' (constraints.region)" in (
            refused.value.details() or ""
        )
        # A region no model is deployed in: no model meets the constraints, each named.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await gateway.Generate(_request(region="ap"))
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        details = refused.value.details() or ""
        assert "s/eu: no deployment in region 'ap'" in details
        assert "s/us: no deployment in region 'ap'" in details
