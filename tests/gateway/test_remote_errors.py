"""The gateway's own refusals and its backends' errors reach a client as their own classes."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from conftest import StackFactory
from support.scripted_engine import ScriptedEngine

from modelyard_client import GatewayClient, remote
from modelyard_client.errors import (
    AllModelsFailed,
    Attempt,
    BackendUnavailable,
    InvalidRequest,
    ModelNotFound,
    ModelyardError,
    Overloaded,
    QuotaExceeded,
    RateLimited,
    RefusedLimit,
)
from modelyard_client.v1 import common_pb2, gateway_pb2


def _request(model: str, *fallbacks: str, max_tokens: int = 8) -> gateway_pb2.GenerateRequest:
    request = remote.generate_request(model, "hi", max_tokens)
    request.fallback_models.extend(fallbacks)
    return request


async def _refusal(address: str, request: gateway_pb2.GenerateRequest) -> ModelyardError:
    """The error `modelyard_client.remote.generate` (what `GatewayClient.generate` runs) raises."""

    def call() -> ModelyardError:
        with grpc.insecure_channel(address) as channel:
            try:
                remote.generate(channel, request, timeout_s=10)
            except ModelyardError as err:
                return err
        raise AssertionError("the call succeeded")

    return await asyncio.to_thread(call)  # a blocking call: off the servers' event loop


async def test_every_failed_model_of_the_chain_arrives_as_an_attempt(
    make_stack: StackFactory,
) -> None:
    # Unknown models alone would be one ModelNotFound (tests/gateway/test_fallback_chain.py).
    broken = ScriptedEngine(("scripted/broken",), fail_with=BackendUnavailable("upstream down"))
    stack = await make_stack(roles=("registry", "gateway"), engines=[broken])
    err = await _refusal(stack.address, _request("nope/a", "scripted/broken"))
    assert isinstance(err, AllModelsFailed)
    assert err.attempts == (
        Attempt("nope/a", "NOT_FOUND", "MODEL_NOT_FOUND", "model 'nope/a' is not in the catalog"),
        Attempt("scripted/broken", "UNAVAILABLE", "BACKEND_UNAVAILABLE", "upstream down"),
    )


async def test_a_refused_parameter_arrives_with_its_field(make_stack: StackFactory) -> None:
    stack = await make_stack(roles=("registry", "gateway"), engines=[ScriptedEngine()])
    err = await _refusal(stack.address, _request("scripted/echo", max_tokens=5000))  # window 4096
    assert isinstance(err, InvalidRequest)
    assert err.field == "params.max_tokens"


async def test_a_quota_refusal_arrives_with_the_refusing_limit(make_stack: StackFactory) -> None:
    engine = ScriptedEngine(limits=common_pb2.RateLimits(requests_per_minute=1))
    stack = await make_stack(roles=("registry", "gateway"), engines=[engine])
    with GatewayClient(stack.address, timeout_s=10) as client:
        await asyncio.to_thread(client.generate, "scripted/echo", "hi", max_tokens=8)
    err = await _refusal(stack.address, _request("scripted/echo"))
    assert isinstance(err, QuotaExceeded)
    (limit,) = err.limits
    assert limit == RefusedLimit(
        "model:scripted/echo", "model 'scripted/echo'", "requests_per_minute", 1.0, limit.wait_s
    )
    assert 55 < limit.wait_s <= 60 and err.retry_after_s == limit.wait_s


@pytest.mark.parametrize(
    "raised",
    [
        RateLimited("upstream 'x' answered HTTP 429", 3.5),
        InvalidRequest("upstream 'x' rejected the request: bad role", field="input.chat"),
        ModelNotFound("scripted/echo", "upstream 'x'"),
        Overloaded("upstream 'x' is at capacity", 2.5, "upstream:x"),
    ],
    ids=["RateLimited", "InvalidRequest", "ModelNotFound", "Overloaded"],
)
async def test_a_backend_error_crosses_the_gateway_to_backend_hop_as_itself(
    make_stack: Any,
    raised: ModelyardError,
) -> None:
    backend = await make_stack(roles=("registry",), engines=[ScriptedEngine(fail_with=raised)])
    gateway = await make_stack(roles=("gateway",), registry_address=backend.address)
    err = await _refusal(gateway.address, _request("scripted/echo"))
    assert type(err) is type(raised)
    assert vars(err) == vars(raised)


async def test_an_unavailable_backend_keeps_its_retry_delay_across_the_hop(
    make_stack: StackFactory,
) -> None:
    raised = BackendUnavailable("upstream 'x' answered HTTP 503: Slow Down", 30.0)
    backend = await make_stack(roles=("registry",), engines=[ScriptedEngine(fail_with=raised)])
    gateway = await make_stack(roles=("gateway",), registry_address=backend.address)
    err = await _refusal(gateway.address, _request("scripted/echo"))
    assert type(err) is BackendUnavailable
    assert err.retry_after_s == 30.0
    assert err.message == (
        f"backend 'scripted' at {backend.address} is unavailable: "
        "upstream 'x' answered HTTP 503: Slow Down; retry after 30.000s"
    )
