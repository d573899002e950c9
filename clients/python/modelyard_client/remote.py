"""Blocking calls to a running modelyard server: the client's, and the `modelyard` command's.

The generated stubs plus what every caller wants: the request a prompt becomes,
and a failed call raised as the error the server raised (`remote_errors`,
which rebuilds the exact class). `modelyard_client.GatewayClient` is built on
these, and the server's `modelyard` command calls them too (the server depends on
this package, never the other way). The hot-swap calls (routes, swaps, A/B tests,
feedback) serve `modelyard routes`, `swap`, `swap-status`, `rollback`, `abtest` and
`feedback`.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator

import grpc

from modelyard_client.errors import remote_errors
from modelyard_client.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    hotswap_pb2,
    hotswap_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
)

# Text, or chat messages as (role, content) pairs.
Prompt = str | list[tuple[str, str]]


def generate_request(
    model: str, prompt: Prompt, max_tokens: int = 0, temperature: float | None = None
) -> gateway_pb2.GenerateRequest:
    """The GenerateRequest for `prompt` to `model`; `max_tokens` 0 leaves it to the gateway,
    `temperature` None to the model."""
    request = gateway_pb2.GenerateRequest(model=model)
    if isinstance(prompt, str):
        request.input.text = prompt
    else:
        for role, content in prompt:
            request.input.chat.messages.add(role=role, content=content)
    request.params.max_tokens = max_tokens
    if temperature is not None:
        request.params.temperature = temperature
    return request


def generate(
    channel: grpc.Channel, request: gateway_pb2.GenerateRequest, timeout_s: float
) -> gateway_pb2.GenerateResponse:
    """One whole answer."""
    with remote_errors():
        response: gateway_pb2.GenerateResponse = gateway_pb2_grpc.GatewayServiceStub(
            channel
        ).Generate(request, timeout=timeout_s)
    return response


def stream_text(
    channel: grpc.Channel, request: gateway_pb2.GenerateRequest, timeout_s: float
) -> Iterator[str]:
    """The answer's text piece by piece, as the model produces it."""
    call = gateway_pb2_grpc.GatewayServiceStub(channel).GenerateStream(request, timeout=timeout_s)
    try:
        with remote_errors():
            for chunk in call:
                if chunk.text:
                    yield chunk.text
    finally:
        call.cancel()  # type: ignore[no-untyped-call]  # grpc-stubs: untyped; stops the server if we stop early


def list_models(channel: grpc.Channel, timeout_s: float) -> list[common_pb2.ModelEntry]:
    """Every model in the catalog."""
    with remote_errors():
        response = registry_pb2_grpc.RegistryServiceStub(channel).ListModels(
            registry_pb2.ListModelsRequest(), timeout=timeout_s
        )
    return list(response.models)


# ---- hot-swap service -------------------------------------------------------


def _hotswap(channel: grpc.Channel) -> hotswap_pb2_grpc.HotSwapServiceStub:
    return hotswap_pb2_grpc.HotSwapServiceStub(channel)


def list_routes(channel: grpc.Channel, timeout_s: float) -> list[hotswap_pb2.Route]:
    """Every route: aliases by name, then task types."""
    with remote_errors():
        response = _hotswap(channel).ListRoutes(hotswap_pb2.ListRoutesRequest(), timeout=timeout_s)
    return list(response.routes)


def start_swap(
    channel: grpc.Channel, request: hotswap_pb2.SwapRequest, timeout_s: float
) -> hotswap_pb2.SwapStatus:
    """Start a swap: its first status (PREPARING), or the error that refused it."""
    with remote_errors():
        status: hotswap_pb2.SwapStatus = _hotswap(channel).Swap(request, timeout=timeout_s)
    return status


def get_swap(channel: grpc.Channel, swap_id: str, timeout_s: float) -> hotswap_pb2.SwapStatus:
    """A swap's status now."""
    with remote_errors():
        status: hotswap_pb2.SwapStatus = _hotswap(channel).GetSwap(
            hotswap_pb2.GetSwapRequest(swap_id=swap_id), timeout=timeout_s
        )
    return status


def list_swaps(
    channel: grpc.Channel, request: hotswap_pb2.ListSwapsRequest, timeout_s: float
) -> list[hotswap_pb2.SwapStatus]:
    """The swaps the service keeps that `request` asks for, newest first."""
    with remote_errors():
        response = _hotswap(channel).ListSwaps(request, timeout=timeout_s)
    return list(response.swaps)


def rollback(channel: grpc.Channel, swap_id: str, timeout_s: float) -> hotswap_pb2.SwapStatus:
    """Put the swap's previous model back (or stop it before its switch): its final status."""
    with remote_errors():
        status: hotswap_pb2.SwapStatus = _hotswap(channel).Rollback(
            hotswap_pb2.RollbackRequest(swap_id=swap_id), timeout=timeout_s
        )
    return status


def set_fallbacks(
    channel: grpc.Channel, alias: str, for_model: str, models: list[str], timeout_s: float
) -> hotswap_pb2.Route:
    """Set the fallback list of `alias`'s route or of the model `for_model`; the route now."""
    request = hotswap_pb2.SetFallbacksRequest(
        alias=alias, for_model=for_model, fallback_models=models
    )
    with remote_errors():
        route: hotswap_pb2.Route = _hotswap(channel).SetFallbacks(request, timeout=timeout_s)
    return route


def watch_swap(
    channel: grpc.Channel, swap_id: str, timeout_s: float | None = None
) -> Generator[hotswap_pb2.SwapStatus, None, None]:
    """The swap's status now, then at every change of phase, until it has ended.

    `timeout_s` None: no deadline (a cold model may take long to warm). Closing
    the iterator early (Ctrl-C) cancels the call; the swap itself goes on.
    """
    call = _hotswap(channel).WatchSwap(
        hotswap_pb2.GetSwapRequest(swap_id=swap_id), timeout=timeout_s
    )
    try:
        with remote_errors():
            yield from call
    finally:
        call.cancel()  # type: ignore[no-untyped-call]  # grpc-stubs: untyped


def start_ab_test(
    channel: grpc.Channel, request: hotswap_pb2.StartABTestRequest, timeout_s: float
) -> hotswap_pb2.ABTest:
    """Start an A/B test on an alias: the test as it begins, or the error that refused it."""
    with remote_errors():
        test: hotswap_pb2.ABTest = _hotswap(channel).StartABTest(request, timeout=timeout_s)
    return test


def get_ab_test(channel: grpc.Channel, test_id: str, timeout_s: float) -> hotswap_pb2.ABTest:
    """An A/B test now, with each arm's figures so far."""
    with remote_errors():
        test: hotswap_pb2.ABTest = _hotswap(channel).GetABTest(
            hotswap_pb2.GetABTestRequest(id=test_id), timeout=timeout_s
        )
    return test


def list_ab_tests(channel: grpc.Channel, timeout_s: float) -> list[hotswap_pb2.ABTest]:
    """Every A/B test, running or ended, oldest first."""
    with remote_errors():
        response = _hotswap(channel).ListABTests(
            hotswap_pb2.ListABTestsRequest(), timeout=timeout_s
        )
    return list(response.tests)


def stop_ab_test(
    channel: grpc.Channel, test_id: str, promote_winner: bool, timeout_s: float
) -> hotswap_pb2.ABTest:
    """End an A/B test (swapping its winner in with `promote_winner`): the test as it ended."""
    with remote_errors():
        test: hotswap_pb2.ABTest = _hotswap(channel).StopABTest(
            hotswap_pb2.StopABTestRequest(id=test_id, promote_winner=promote_winner),
            timeout=timeout_s,
        )
    return test


def feedback(
    channel: grpc.Channel, request_id: str, score: float, timeout_s: float
) -> hotswap_pb2.FeedbackResponse:
    """Score one answer an A/B test served: the test and the arm it counts for."""
    with remote_errors():
        response: hotswap_pb2.FeedbackResponse = _hotswap(channel).Feedback(
            hotswap_pb2.FeedbackRequest(request_id=request_id, score=score), timeout=timeout_s
        )
    return response
