"""A response schema in a request's params makes the selector require JSON output."""

from __future__ import annotations

import grpc
from conftest import StackFactory
from support.scripted_engine import ScriptedEngine

from modelyard.assembly import Stack
from modelyard.assembly.selection import selection_settings
from modelyard.config import default_config
from modelyard.selector.candidates import CandidatePool
from modelyard.selector.selection import Selector
from modelyard_client.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
    selector_pb2,
)

C = common_pb2
SCHEMA = '{"type": "object"}'


def _model(model_id: str, *capabilities: C.Capability.ValueType) -> C.ModelEntry:
    entry = C.ModelEntry(
        id=model_id,
        provider="p",
        capabilities=[C.CAPABILITY_TEXT_GENERATION, *capabilities],
        input_modalities=[C.MODALITY_TEXT],
    )
    entry.deployments.add(backend="p", endpoint="127.0.0.1:9")
    return entry


def test_the_selector_ranks_only_json_models_for_params_with_a_schema() -> None:
    entries = [_model("p/plain"), _model("p/json", C.CAPABILITY_JSON_OUTPUT)]
    settings = selection_settings(default_config({}).selection)
    selector = Selector(CandidatePool(lambda: entries, lambda: 1), settings)
    request = selector_pb2.SelectRequest()
    request.task.input.text = "List three colours"
    schema = C.GenerationParams(response_schema_json=SCHEMA)
    assert selector.ranked(request, schema) == ["p/json"]
    assert sorted(selector.ranked(request)) == ["p/json", "p/plain"]


async def test_the_gateway_sends_a_request_with_a_schema_to_a_json_model(
    make_stack: StackFactory,
) -> None:
    plain = ScriptedEngine(("s/plain",), pieces=("plain",))
    json_model = ScriptedEngine(("s/json",), pieces=("{}",))
    stack: Stack = await make_stack(roles=("registry", "gateway"), engines=[plain, json_model])
    async with grpc.aio.insecure_channel(stack.address) as channel:
        registry = registry_pb2_grpc.RegistryServiceStub(channel)
        # s/plain is the clear favourite; s/json alone declares JSON output (written last).
        for model_id, latency in (("s/plain", 10), ("s/json", 500)):
            entry = await registry.GetModel(registry_pb2.GetModelRequest(id=model_id))
            entry.performance.latency_ms_p50 = latency
            if model_id == "s/json":
                entry.capabilities.append(C.CAPABILITY_JSON_OUTPUT)
            await registry.RegisterModel(
                registry_pb2.RegisterModelRequest(model=entry, upsert=True)
            )
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        request = gateway_pb2.GenerateRequest()
        request.input.text = "List three colours"
        request.params.response_schema_json = SCHEMA
        for _ in range(100):  # until the gateway's live catalog has both updates
            try:
                reply = await gateway.Generate(request)
                break
            except grpc.aio.AioRpcError as exc:  # no JSON model in its copy yet
                assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert (reply.model_id, reply.text) == ("s/json", "{}")
        request.params.ClearField("response_schema_json")
        assert (await gateway.Generate(request)).model_id == "s/plain"
