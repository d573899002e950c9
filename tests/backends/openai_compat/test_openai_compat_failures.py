"""Upstream failures become the right gRPC status at the gateway, naming the upstream.

A stream that ends before the upstream said it was finished is ABORTED, never
a normal finish: the caller holds a partial answer.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time

import grpc
import pytest
from backends.openai_compat.openai_fake import (
    Clients,
    FakeUpstream,
    StackFor,
    UnframedUpstream,
    chunk,
    openai_error,
    request,
    usage_chunk,
)
from support.grpc_trailers import trailers

from modelyard_client.errors import (
    RETRY_AFTER_MS_KEY,
    ProviderAccessDenied,
    ProviderAuthFailed,
    RateLimited,
    error_from_rpc,
    error_from_status,
)
from modelyard_client.v1 import backend_pb2, common_pb2, gateway_pb2, registry_pb2


async def _stream_until_error(
    clients: Clients, req: gateway_pb2.GenerateRequest
) -> tuple[list[gateway_pb2.GenerateChunk], grpc.aio.AioRpcError]:
    """Every chunk the gateway streamed, and the error that ended the stream."""
    chunks: list[gateway_pb2.GenerateChunk] = []
    call = clients.gateway.GenerateStream(req, timeout=10)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for c in call:
            chunks.append(c)
    return chunks, info.value


async def test_rate_limit_is_resource_exhausted_with_the_upstream_retry_time(
    upstream: FakeUpstream, stack_for: StackFor
) -> None:
    upstream.fail(
        429,
        openai_error("Rate limit reached for requests", "requests", "rate_limit_exceeded"),
        headers={"Retry-After": "7"},
    )
    clients = await stack_for(upstream.url)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await clients.gateway.Generate(request(), timeout=10)
    err = info.value
    details = err.details() or ""
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "upstream 'custom' rate-limited the request" in details
    assert "Rate limit reached for requests" in details
    assert "retry after 7.000s" in details
    sent = trailers(err)
    assert sent[RETRY_AFTER_MS_KEY] == "7000"
    rebuilt = error_from_status(err.code(), details, tuple(sent.items()))
    assert isinstance(rebuilt, RateLimited)
    assert rebuilt.retry_after_s == 7.0
    assert len(upstream.bodies) == 1  # no retry behind the caller's back


@pytest.mark.parametrize(
    ("status", "code", "reason"),
    [
        # The body's code says the prompt is too long for the model: a refusal of its own.
        (400, grpc.StatusCode.INVALID_ARGUMENT, "CONTEXT_LENGTH_EXCEEDED"),
        (422, grpc.StatusCode.INVALID_ARGUMENT, "CONTEXT_LENGTH_EXCEEDED"),
        (404, grpc.StatusCode.NOT_FOUND, "MODEL_NOT_FOUND"),
        (500, grpc.StatusCode.UNAVAILABLE, "BACKEND_UNAVAILABLE"),
        (503, grpc.StatusCode.UNAVAILABLE, "BACKEND_UNAVAILABLE"),
        (401, grpc.StatusCode.UNAUTHENTICATED, "PROVIDER_AUTH_FAILED"),
        (403, grpc.StatusCode.PERMISSION_DENIED, "PROVIDER_ACCESS_DENIED"),
        (409, grpc.StatusCode.UNKNOWN, "PROVIDER_ERROR"),
    ],
)
async def test_http_errors_map_to_status_codes_with_the_upstream_message(
    upstream: FakeUpstream, stack_for: StackFor, status: int, code: grpc.StatusCode, reason: str
) -> None:
    message = f"This model's maximum context length is 4097 tokens (HTTP {status} case)"
    upstream.fail(status, openai_error(message, "invalid_request_error", "context_length_exceeded"))
    clients = await stack_for(upstream.url)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await clients.gateway.Generate(request(), timeout=10)
    assert info.value.code() == code
    assert error_from_rpc(info.value).reason == reason
    details = info.value.details() or ""
    assert message in details
    assert "'custom'" in details
    assert "{" not in details  # the message, not the raw JSON body


async def test_a_refused_provider_key_is_unauthenticated_naming_the_providers_key(
    upstream: FakeUpstream, stack_for: StackFor
) -> None:
    upstream.fail(
        401,
        openai_error(
            "Incorrect API key provided: sk-...abcd", "invalid_request_error", "invalid_api_key"
        ),
    )
    clients = await stack_for(upstream.url)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await clients.gateway.Generate(request(), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    err = error_from_rpc(info.value)
    assert type(err) is ProviderAuthFailed
    assert err.message == (
        "upstream 'custom' rejected this gateway's API key for the provider "
        "(HTTP 401; not the caller's credentials): Incorrect API key provided: sk-...abcd"
    )
    assert len(upstream.bodies) == 1  # not retried: only an operator can fix the key


async def test_a_forbidden_provider_key_is_permission_denied_naming_the_providers_key(
    upstream: FakeUpstream, stack_for: StackFor
) -> None:
    upstream.fail(
        403,
        openai_error(
            "Country, region, or territory not supported",
            "request_forbidden",
            "unsupported_country_region_territory",
        ),
    )
    clients = await stack_for(upstream.url)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await clients.gateway.Generate(request(), timeout=10)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    err = error_from_rpc(info.value)
    assert type(err) is ProviderAccessDenied
    assert isinstance(err, ProviderAuthFailed)  # one except clause catches both refusals
    assert err.message == (
        "upstream 'custom' denied this gateway's API key for the provider "
        "(HTTP 403; not the caller's credentials): Country, region, or territory not supported"
    )


async def test_bad_request_is_invalid_argument_carrying_the_upstream_message(
    upstream: FakeUpstream, stack_for: StackFor
) -> None:
    upstream.fail(
        400,
        openai_error(
            "Invalid value for 'temperature': must be at most 2.", "invalid_request_error"
        ),
    )
    clients = await stack_for(upstream.url)
    chunks, err = await _stream_until_error(clients, request())
    assert chunks == []
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.details() or "") == (
        "upstream 'custom' rejected the request: "
        "Invalid value for 'temperature': must be at most 2."
    )


async def test_upstream_gone_after_start_is_unavailable_naming_it(
    upstream: FakeUpstream, stack_for: StackFor
) -> None:
    clients = await stack_for(upstream.url)
    await upstream.stop()  # the model stays in the catalog; its upstream refuses connections
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await clients.gateway.Generate(request(), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    details = info.value.details() or ""
    assert f"upstream 'custom' at {upstream.url}/v1 is unreachable" in details


async def test_connection_dropped_mid_stream_is_aborted_as_truncated(
    upstream: FakeUpstream, stack_for: StackFor
) -> None:
    upstream.stream_then_drop([chunk("", role="assistant"), chunk("Hel"), chunk("lo")])
    clients = await stack_for(upstream.url)
    chunks, err = await _stream_until_error(clients, request())
    text = "".join(c.text for c in chunks)
    # aiohttp raises the broken body before handing over bytes it still buffers,
    # so how much of the partial answer streams depends on timing; never more.
    assert "Hello".startswith(text)
    assert all(c.finish_reason == common_pb2.FINISH_REASON_UNSPECIFIED for c in chunks)
    assert err.code() == grpc.StatusCode.ABORTED
    details = err.details() or ""
    assert "upstream 'custom'" in details
    assert "truncated" in details


async def test_done_without_finish_reason_is_aborted_as_truncated(
    upstream: FakeUpstream, stack_for: StackFor
) -> None:
    # What llama.cpp's server sends when a second request interrupts the first.
    upstream.stream([chunk("", role="assistant"), chunk("Once"), chunk(" upon")], done=True)
    clients = await stack_for(upstream.url)
    chunks, err = await _stream_until_error(clients, request())
    # What arrived in one read is forwarded as one piece.
    assert "".join(c.text for c in chunks) == "Once upon"
    assert err.code() == grpc.StatusCode.ABORTED
    assert (err.details() or "") == (
        "the answer of 'custom/fake-model' was cut short after 1 chunk (9 characters) had "
        "reached the caller: upstream 'custom' ended the stream for 'custom/fake-model' "
        "after 2 piece(s) without a finish_reason: the answer is truncated"
    )


async def test_unary_generate_never_returns_a_truncated_answer_as_complete(
    upstream: FakeUpstream, stack_for: StackFor
) -> None:
    upstream.stream([chunk("Once"), chunk(" upon")], done=True)
    clients = await stack_for(upstream.url)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await clients.gateway.Generate(request(), timeout=10)
    assert info.value.code() == grpc.StatusCode.ABORTED
    assert "truncated" in (info.value.details() or "")


async def test_caller_cancelling_the_stream_closes_the_upstream_request(
    upstream: FakeUpstream, stack_for: StackFor
) -> None:
    upstream.stream_then_hang([chunk("", role="assistant"), chunk("Hello")])
    clients = await stack_for(upstream.url)
    call = clients.gateway.GenerateStream(request(), timeout=30)
    first = await anext(aiter(call))
    assert first.text == "Hello"
    assert not upstream.disconnected.is_set()
    call.cancel()
    # gateway -> backend -> engine -> HTTP: the upstream stops generating for no one.
    await asyncio.wait_for(upstream.disconnected.wait(), timeout=10)


async def test_stream_cut_mid_event_on_an_unframed_body_is_aborted_not_malformed(
    stack_for: StackFor,
) -> None:
    # The body ends only when the socket closes; the cut falls inside an event.
    whole = json.dumps(chunk("Hello")).encode()
    cut = json.dumps(chunk(" wor")).encode()[:40]
    fake = UnframedUpstream(b"data: " + whole + b"\n\ndata: " + cut)
    await fake.start()
    try:
        clients = await stack_for(fake.url)
        chunks, err = await _stream_until_error(clients, request())
    finally:
        await fake.stop()
    assert [c.text for c in chunks] == ["Hello"]
    assert err.code() == grpc.StatusCode.ABORTED, err.details()
    assert "truncated" in (err.details() or "")


async def test_error_event_mid_stream_is_reported_with_its_message(
    upstream: FakeUpstream, stack_for: StackFor
) -> None:
    upstream.stream(
        [
            chunk("Hi"),
            openai_error("The server had an error processing your request.", "server_error"),
        ],
        done=False,
    )
    clients = await stack_for(upstream.url)
    chunks, err = await _stream_until_error(clients, request())
    assert [c.text for c in chunks] == ["Hi"]
    # After output, every failure is ABORTED (not a code a client may retry blindly),
    # still carrying the provider's words.
    assert err.code() == grpc.StatusCode.ABORTED
    details = err.details() or ""
    assert details.startswith("the answer of 'custom/fake-model' was cut short after 1 chunk")
    assert "upstream 'custom' failed mid-stream" in details
    assert "The server had an error processing your request." in details


async def test_upstream_unreachable_at_start_is_unhealthy_with_no_models(
    stack_for: StackFor,
) -> None:
    # A bound socket that never listens: connecting to it is refused, and no one else gets it.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        clients = await stack_for(url)

        health = await clients.backend.Health(backend_pb2.BackendHealthRequest(), timeout=10)
        assert health.status == common_pb2.HEALTH_STATUS_UNHEALTHY
        assert f"upstream 'custom' at {url}/v1 is unreachable" in health.reason
        assert list(health.loaded_models) == []

        listed = await clients.backend.ListModels(
            backend_pb2.BackendListModelsRequest(), timeout=10
        )
        assert list(listed.models) == []
        catalog = await clients.registry.ListModels(
            registry_pb2.ListModelsRequest(include_unavailable=True), timeout=10
        )
        assert list(catalog.models) == []
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await clients.gateway.Generate(request(), timeout=10)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_finished_stream_without_done_is_finalised_at_once_with_its_usage(
    upstream: FakeUpstream, stack_for: StackFor
) -> None:
    """OpenAI sends the finish chunk, then (with include_usage) one chunk of usage, then
    ``data: [DONE]``; an upstream that never sends [DONE] nor closes must not hold the
    call: it ends at its finish and usage, and the upstream request is closed."""
    upstream.stream_then_hang([chunk("Hello"), chunk(finish_reason="stop"), usage_chunk(5, 1)])
    clients = await stack_for(upstream.url)
    started = time.monotonic()
    chunks = [c async for c in clients.gateway.GenerateStream(request(), timeout=10)]
    assert time.monotonic() - started < 2.0  # not the 30 s stall deadline, nor the call's
    assert chunks[-1].finish_reason == common_pb2.FINISH_REASON_STOP
    assert (chunks[-1].usage.input_tokens, chunks[-1].usage.output_tokens) == (5, 1)
    async with asyncio.timeout(5):
        await upstream.disconnected.wait()
