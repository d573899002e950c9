"""What a fallback chain answers when no model of it can serve.

Every model unknown: NOT_FOUND, as for one unknown model. Some unknown, some
failed: UNAVAILABLE (`AllModelsFailed`), since the failed ones may serve on
a retry, with every attempt, the unknown ones as NOT_FOUND.
"""

from __future__ import annotations

import grpc
import pytest
from conftest import StackFactory
from support.scripted_engine import ScriptedEngine

from modelyard_client.errors import (
    AllModelsFailed,
    Attempt,
    BackendUnavailable,
    ModelNotFound,
    error_from_rpc,
)
from modelyard_client.v1 import gateway_pb2, gateway_pb2_grpc


def _request(model: str, *fallbacks: str) -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=model, fallback_models=fallbacks)
    request.input.text = "hi"
    request.params.max_tokens = 4
    return request


async def _refusal(address: str, request: gateway_pb2.GenerateRequest) -> grpc.aio.AioRpcError:
    async with grpc.aio.insecure_channel(address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await gateway_pb2_grpc.GatewayServiceStub(channel).Generate(request, timeout=10)
    return info.value


async def test_a_chain_of_unknown_models_is_not_found_naming_each(
    make_stack: StackFactory,
) -> None:
    engine = ScriptedEngine()
    stack = await make_stack(roles=("registry", "gateway"), engines=[engine])
    refused = await _refusal(stack.address, _request("nope/a", "nope/b", "nope/c"))
    assert refused.code() == grpc.StatusCode.NOT_FOUND
    assert refused.details() == (
        "no model of the fallback chain is known: model 'nope/a' is not in the catalog"
        " | model 'nope/b' is not in the catalog | model 'nope/c' is not in the catalog"
    )
    err = error_from_rpc(refused)
    assert type(err) is ModelNotFound
    assert err.model_id == "nope/a"
    assert engine.calls == []


async def test_a_model_the_backend_lost_counts_as_unknown_too(make_stack: StackFactory) -> None:
    gone = ScriptedEngine(("scripted/gone",), fail_with=ModelNotFound("scripted/gone", "llama.cpp"))
    stack = await make_stack(roles=("registry", "gateway"), engines=[gone])
    refused = await _refusal(stack.address, _request("scripted/gone", "nope/b"))
    assert refused.code() == grpc.StatusCode.NOT_FOUND
    assert refused.details() == (
        "no model of the fallback chain is known: model 'scripted/gone' is not in llama.cpp"
        " | model 'nope/b' is not in the catalog"
    )


async def test_unknown_and_failed_models_are_unavailable_with_every_attempt(
    make_stack: StackFactory,
) -> None:
    broken = ScriptedEngine(("scripted/broken",), fail_with=BackendUnavailable("upstream down"))
    stack = await make_stack(roles=("registry", "gateway"), engines=[broken])
    refused = await _refusal(stack.address, _request("nope/a", "scripted/broken"))
    assert refused.code() == grpc.StatusCode.UNAVAILABLE
    err = error_from_rpc(refused)
    assert isinstance(err, AllModelsFailed)
    assert err.attempts == (
        Attempt("nope/a", "NOT_FOUND", "MODEL_NOT_FOUND", "model 'nope/a' is not in the catalog"),
        Attempt("scripted/broken", "UNAVAILABLE", "BACKEND_UNAVAILABLE", "upstream down"),
    )
