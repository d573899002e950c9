"""One upstream fault per test, through the real gateway: what the upstream saw, how long the
call took, what the caller got.

A registry, a gateway and an openai_compat backend (``custom``) in front of
a `FaultyUpstream` serving ``model-a``, ``model-b`` and ``model-c``, whose
answers each test scripts after a provider's published behaviour (see
scripted_faults.py). Backoffs are small (``base_backoff_ms: 20``) so each
test is quick; the waits that matter (``Retry-After``, the 1.5 s spacing)
are the real ones.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import AsyncIterator

import grpc
import pytest
from backends.openai_compat.scripted_faults import (
    ANSWER,
    RESET,
    Answer,
    FaultyUpstream,
    anthropic_overloaded,
    content_policy,
    context_length_exceeded,
    overloaded,
    rate_limited,
    server_error,
)
from conftest import StackFactory
from support.grpc_trailers import retry_delay_s

from modelyard.assembly import Stack
from modelyard.config import parse_config
from modelyard.ratelimit.local import LocalBucketStore
from modelyard.ratelimit.plan import Bucket, Scope
from modelyard_client.errors import (
    AllModelsFailed,
    Attempt,
    ContentRejected,
    ContextLengthExceeded,
    error_from_rpc,
)
from modelyard_client.v1 import gateway_pb2, gateway_pb2_grpc

ROLES = ("registry", "gateway", "backend-openai-compat")
A, B, C = "custom/model-a", "custom/model-b", "custom/model-c"
UNAVAILABLE_503 = (
    "upstream 'custom' answered HTTP 503: "
    "The engine is currently overloaded, please try again later"
)


@pytest.fixture
async def upstream() -> AsyncIterator[FaultyUpstream]:
    fake = FaultyUpstream(models=["model-a", "model-b", "model-c"])
    await fake.start()
    yield fake
    await fake.stop()


async def _stack(
    make_stack: StackFactory,
    upstream: FaultyUpstream,
    *,
    max_retries: int = 2,
    profiles: str = "{}",
    selection: str = "{}",
    circuit: str = "{}",
) -> Stack:
    config = parse_config(
        f"""
model_system:
  selection: {selection}
  gateway:
    retries: {{base_backoff_ms: 20, max_backoff_ms: 2000}}
    circuit: {circuit}
  backends:
    custom:
      kind: openai_compat
      endpoint: "{upstream.url}"
      max_retries: {max_retries}
      model_profiles: {profiles}
"""
    )
    return await make_stack(roles=ROLES, config=config)


def _request(*fallbacks: str, text: str = "hi", max_tokens: int = 8) -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=A, fallback_models=fallbacks)
    request.input.text = text
    request.params.max_tokens = max_tokens
    return request


async def _generate(
    stack: Stack, request: gateway_pb2.GenerateRequest
) -> tuple[gateway_pb2.GenerateResponse, float]:
    started = time.monotonic()
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        answer = await stub.Generate(request, timeout=10)
    return answer, time.monotonic() - started


async def _refused(
    stack: Stack, request: gateway_pb2.GenerateRequest
) -> tuple[grpc.aio.AioRpcError, float]:
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _generate(stack, request)
    return info.value, time.monotonic() - started


def _gaps(times: list[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(times)]


async def test_a_429_with_retry_after_is_retried_once_the_wait_is_over(
    make_stack: StackFactory, upstream: FaultyUpstream
) -> None:
    upstream.script("model-a", rate_limited(retry_after="1"), ANSWER)
    stack = await _stack(make_stack, upstream)
    answer, took = await _generate(stack, _request())
    assert (answer.model_id, answer.text) == (A, "model-a;model-a;")
    seen = upstream.seen_for("model-a")
    assert len(seen) == 2
    assert 1.0 <= _gaps(seen)[0] < 1.3  # the upstream's second, not the 20 ms backoff
    assert 1.0 <= took < 1.6


async def test_a_429_with_a_retry_after_longer_than_the_longest_backoff_is_not_waited(
    make_stack: StackFactory, upstream: FaultyUpstream
) -> None:
    upstream.script("model-a", rate_limited(retry_after="30"))
    stack = await _stack(make_stack, upstream)
    err, took = await _refused(stack, _request())
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_from_rpc(err).reason == "RATE_LIMITED"
    assert retry_delay_s(err) == 30.0  # the caller hears when to come back
    assert len(upstream.seen) == 1
    assert took < 0.5


async def test_a_persistent_429_without_retry_after_is_retried_up_to_max_retries(
    make_stack: StackFactory, upstream: FaultyUpstream
) -> None:
    upstream.script("model-a", rate_limited())
    stack = await _stack(make_stack, upstream, max_retries=1)
    err, took = await _refused(stack, _request())
    # No Retry-After: the engine's 1 s default is the wait, and what the caller is told.
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_from_rpc(err).reason == "RATE_LIMITED"
    assert retry_delay_s(err) == 1.0
    seen = upstream.seen_for("model-a")
    assert len(seen) == 2  # 1 + max_retries
    assert 1.0 <= _gaps(seen)[0] < 1.3
    assert 1.0 <= took < 1.6


async def test_one_500_then_success_is_served_by_a_quick_retry(
    make_stack: StackFactory, upstream: FaultyUpstream
) -> None:
    upstream.script("model-a", server_error(), ANSWER)
    stack = await _stack(make_stack, upstream)
    answer, took = await _generate(stack, _request())
    assert (answer.model_id, answer.text) == (A, "model-a;model-a;")
    seen = upstream.seen_for("model-a")
    assert len(seen) == 2
    assert _gaps(seen)[0] < 0.2  # full jitter below base_backoff_ms (20 ms), plus the call
    assert took < 0.5


async def test_a_persistent_503_spaces_its_third_attempt_then_fails_over_within_the_cap(
    make_stack: StackFactory, upstream: FaultyUpstream
) -> None:
    upstream.script("model-a", overloaded())
    upstream.script("model-b", overloaded())
    stack = await _stack(make_stack, upstream)
    err, took = await _refused(stack, _request(B))
    seen_a = upstream.seen_for("model-a")
    # Three attempts to model-a (1 + max_retries 2), never more than 2 within 1.5 s; then
    # the call's cap of 4 attempts leaves model-b one.
    assert len(seen_a) == 3
    # Spaced by the gateway's clock when each attempt starts; the fake notes arrivals, and
    # the first one's connection setup (the later ones reuse it) may put it a little late.
    assert seen_a[2] - seen_a[0] >= 1.5 - 0.01
    assert len(upstream.seen_for("model-b")) == 1
    assert 1.5 <= took < 2.2
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    failed = error_from_rpc(err)
    assert isinstance(failed, AllModelsFailed)
    a_503 = Attempt(A, "UNAVAILABLE", "BACKEND_UNAVAILABLE", UNAVAILABLE_503)
    assert failed.attempts == (a_503, a_503, a_503, dataclasses.replace(a_503, model_id=B))


async def test_a_persistent_503_of_the_only_model_is_its_own_error(
    make_stack: StackFactory, upstream: FaultyUpstream
) -> None:
    upstream.script("model-a", overloaded())
    stack = await _stack(make_stack, upstream, max_retries=1)
    err, took = await _refused(stack, _request())
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert error_from_rpc(err).reason == "BACKEND_UNAVAILABLE"
    assert err.details() == UNAVAILABLE_503
    assert len(upstream.seen) == 2
    assert took < 0.5


@pytest.mark.parametrize("fault", [RESET, anthropic_overloaded()], ids=["reset", "529"])
async def test_a_reset_before_headers_or_a_529_is_retried(
    make_stack: StackFactory, upstream: FaultyUpstream, fault: object
) -> None:
    upstream.script("model-a", fault, ANSWER)  # type: ignore[arg-type]
    stack = await _stack(make_stack, upstream)
    answer, took = await _generate(stack, _request())
    assert (answer.model_id, answer.text) == (A, "model-a;model-a;")
    assert len(upstream.seen_for("model-a")) == 2
    assert took < 0.5


async def test_context_length_exceeded_goes_to_the_next_model_with_a_larger_window(
    make_stack: StackFactory, upstream: FaultyUpstream
) -> None:
    upstream.script("model-a", context_length_exceeded(4097))
    profiles = (
        "{model-a: {context_window: 4097}, model-c: {context_window: 4000},"
        " model-b: {context_window: 128000}}"
    )
    stack = await _stack(make_stack, upstream, profiles=profiles)
    answer, took = await _generate(stack, _request(C, B))
    assert answer.model_id == B
    # model-a once (never retried: the same prompt will not fit), model-c passed over
    # unasked (its window is smaller), model-b served.
    assert [m for m, _ in upstream.seen] == ["model-a", "model-b"]
    assert took < 0.5


async def test_a_prompt_known_too_long_skips_the_model_unasked(
    make_stack: StackFactory, upstream: FaultyUpstream
) -> None:
    profiles = "{model-a: {context_window: 64}, model-b: {context_window: 128000}}"
    stack = await _stack(make_stack, upstream, profiles=profiles)
    long = _request(B, text="word " * 60, max_tokens=8)  # about 76 tokens: over 64
    answer, _ = await _generate(stack, long)
    assert answer.model_id == B
    assert [m for m, _ in upstream.seen] == ["model-b"]
    # No fallback: the clear refusal, before any call.
    err, _ = await _refused(stack, _request(text="word " * 60, max_tokens=8))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    refused = error_from_rpc(err)
    assert isinstance(refused, ContextLengthExceeded)
    assert refused.field == "input"
    assert err.details() == (
        "the input (about 76 tokens) and params.max_tokens 8 exceed model 'custom/model-a' "
        "context window of 64 tokens"
    )
    assert [m for m, _ in upstream.seen] == ["model-b"]


async def test_context_length_exceeded_without_fallback_carries_the_providers_code(
    make_stack: StackFactory, upstream: FaultyUpstream
) -> None:
    upstream.script("model-a", context_length_exceeded(4097))
    stack = await _stack(make_stack, upstream)
    err, took = await _refused(stack, _request())
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    refused = error_from_rpc(err)
    assert isinstance(refused, ContextLengthExceeded)
    assert refused.provider_code == "context_length_exceeded"
    assert "maximum context length is 4097 tokens" in refused.message
    assert len(upstream.seen) == 1
    assert took < 0.5


async def test_a_content_policy_rejection_is_the_callers_answer_not_retried(
    make_stack: StackFactory, upstream: FaultyUpstream
) -> None:
    upstream.script("model-a", content_policy())
    stack = await _stack(make_stack, upstream)
    err, took = await _refused(stack, _request(B))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    refused = error_from_rpc(err)
    assert isinstance(refused, ContentRejected)
    assert refused.provider_code == "content_policy_violation"
    assert refused.message == (
        "upstream 'custom' rejected the request: "
        "Your request was rejected as a result of our safety system."
    )
    assert [m for m, _ in upstream.seen] == ["model-a"]  # neither retried nor failed over
    assert took < 0.5


async def test_a_fallbacks_refusal_never_replaces_the_original_failure(
    make_stack: StackFactory, upstream: FaultyUpstream
) -> None:
    upstream.script("model-a", overloaded())
    upstream.script("model-b", content_policy())
    stack = await _stack(make_stack, upstream, max_retries=0)
    err, _ = await _refused(stack, _request(B))
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    failed = error_from_rpc(err)
    assert isinstance(failed, AllModelsFailed)
    assert [(a.model_id, a.reason) for a in failed.attempts] == [
        (A, "BACKEND_UNAVAILABLE"),
        (B, "CONTENT_REJECTED"),
    ]


async def test_the_files_fallbacks_follow_the_requests_the_models_own_first(
    make_stack: StackFactory, upstream: FaultyUpstream
) -> None:
    upstream.script("model-a", overloaded())
    upstream.script("model-b", overloaded())
    stack = await _stack(
        make_stack,
        upstream,
        max_retries=0,
        profiles=f"{{model-a: {{fallback: [{B}]}}}}",
        selection=f"{{fallback: [{B}, {C}]}}",
    )
    answer, _ = await _generate(stack, _request())
    assert answer.model_id == C
    assert [m for m, _ in upstream.seen] == ["model-a", "model-b", "model-c"]  # B once


def _tokens_left(stack: Stack, model_id: str, tokens_per_minute: float) -> float:
    assert stack.limits is not None
    store = stack.limits.store
    assert isinstance(store, LocalBucketStore)
    return store.level(Bucket(Scope.model(model_id), "tokens", tokens_per_minute))


async def test_a_failed_over_call_is_the_serving_models_and_the_failures_are_not_billed(
    make_stack: StackFactory, upstream: FaultyUpstream
) -> None:
    upstream.script("model-a", overloaded(), overloaded())
    upstream.script("model-b", Answer(pieces=3, prompt_tokens=11, completion_tokens=3))
    limit = "tokens_per_minute: 6000"
    profiles = f"{{model-a: {{{limit}}}, model-b: {{{limit}}}}}"
    stack = await _stack(make_stack, upstream, max_retries=1, profiles=profiles)
    started = time.monotonic()
    answer, took = await _generate(stack, _request(B, max_tokens=40))
    assert (answer.model_id, answer.text) == (B, "model-b;model-b;model-b;")
    assert (answer.usage.input_tokens, answer.usage.output_tokens) == (11, 3)
    assert len(upstream.seen_for("model-a")) == 2
    assert took < 0.5
    refill = (time.monotonic() - started) * 6000 / 60
    # model-a's two failed attempts reserved 1 + 40 each and got all of it back; model-b
    # kept what it used, 11 + 3.
    assert _tokens_left(stack, A, 6000) == 6000
    assert 6000 - 14 <= _tokens_left(stack, B, 6000) <= 6000 - 14 + refill


async def test_every_upstream_down_costs_at_most_a_fifth_more_attempts_than_requests(
    make_stack: StackFactory, upstream: FaultyUpstream
) -> None:
    # 100 requests a second for 2 s, every one answered 503: without a budget, 3 each.
    # The circuit would take the lone deployment out after 5 failures (the next test):
    # here it never may, so the budget alone bounds the attempts.
    upstream.script("model-a", overloaded())
    stack = await _stack(make_stack, upstream, circuit="{max_ejected_share: 0.5}")
    calls = []
    for _ in range(200):
        calls.append(asyncio.create_task(_refused(stack, _request())))
        await asyncio.sleep(0.01)
    refusals = await asyncio.gather(*calls)
    assert {err.code() for err, _ in refusals} == {grpc.StatusCode.UNAVAILABLE}
    assert 200 < len(upstream.seen) <= 1.2 * 200


async def test_with_the_circuit_an_upstream_down_is_left_alone_after_five_failures(
    make_stack: StackFactory, upstream: FaultyUpstream
) -> None:
    # The same outage with the default circuit: 5 failures in a row take the lone
    # deployment out for 5 s, so the next calls are refused at the gateway, unsent.
    upstream.script("model-a", overloaded())
    stack = await _stack(make_stack, upstream)
    calls = []
    for _ in range(200):
        calls.append(asyncio.create_task(_refused(stack, _request())))
        await asyncio.sleep(0.01)
    refusals = await asyncio.gather(*calls)
    assert {err.code() for err, _ in refusals} == {grpc.StatusCode.UNAVAILABLE}
    assert 5 <= len(upstream.seen) <= 10  # the failures that opened it, and their retries
    ejected = [err for err, _ in refusals if "ejected" in (err.details() or "")]
    assert len(ejected) >= 150
