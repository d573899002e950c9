"""Requests spread over a model's deployments; a failing one is ejected."""

from __future__ import annotations

import grpc
from conftest import StackFactory
from support.scripted_engine import ScriptedEngine

from modelyard.v1 import gateway_pb2, gateway_pb2_grpc, registry_pb2, registry_pb2_grpc


async def test_two_deployments_share_load_and_a_dead_one_is_ejected(
    make_stack: StackFactory,
) -> None:
    front = await make_stack(roles=("registry", "gateway"))
    engines = [ScriptedEngine(("s/m",), pieces=(name,)) for name in ("a", "b")]
    backends = [
        await make_stack(roles=(), engines=[engine], registry_address=front.address)
        for engine in engines
    ]
    request = gateway_pb2.GenerateRequest(model="s/m")
    request.input.text = "hi"
    async with grpc.aio.insecure_channel(front.address) as channel:
        registry = registry_pb2_grpc.RegistryServiceStub(channel)
        entry = await registry.GetModel(registry_pb2.GetModelRequest(id="s/m"))
        assert sorted(d.endpoint for d in entry.deployments) == sorted(b.address for b in backends)
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        texts = [(await gateway.Generate(request)).text for _ in range(10)]
        assert sorted(set(texts)) == ["a", "b"]  # both deployments served

        await backends[0].server.server.stop(0)  # deployment "a" dies
        outcomes = []
        for _ in range(30):
            try:
                outcomes.append((await gateway.Generate(request)).text)
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE
                outcomes.append("error")
        # After 5 consecutive failures "a" is ejected: the rest all go to "b".
        assert outcomes.count("error") <= 5
        assert outcomes[-15:] == ["b"] * 15
