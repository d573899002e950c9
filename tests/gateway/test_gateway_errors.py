"""Bad input gets a clear error before any backend is called; failures name their cause."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import grpc
import pytest
from conftest import StackFactory
from support.grpc_trailers import trailers
from support.scripted_engine import ScriptedEngine

from modelyard.assembly import Stack
from modelyard.model_input import estimate_input_tokens
from modelyard.ratelimit.local import LocalBucketStore
from modelyard.ratelimit.plan import Bucket, Scope
from modelyard_client.errors import RETRY_AFTER_MS_KEY, BackendUnavailable, ModelNotFound
from modelyard_client.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
)


def _request(
    model: str = "scripted/echo", text: str = "hi", max_tokens: int = 8
) -> gateway_pb2.GenerateRequest:
    req = gateway_pb2.GenerateRequest(model=model)
    req.input.text = text
    req.params.max_tokens = max_tokens
    return req


async def _call(address: str, req: gateway_pb2.GenerateRequest) -> gateway_pb2.GenerateResponse:
    async with grpc.aio.insecure_channel(address) as channel:
        return await gateway_pb2_grpc.GatewayServiceStub(channel).Generate(req, timeout=10)


async def _status(address: str, req: gateway_pb2.GenerateRequest) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _call(address, req)
    return info.value


@pytest.fixture
async def scripted(make_stack: StackFactory) -> tuple[Stack, ScriptedEngine]:
    engine = ScriptedEngine()
    stack = await make_stack(roles=("registry", "gateway"), engines=[engine])
    return stack, engine


async def test_happy_path_streams_through_backend(scripted: tuple[Stack, ScriptedEngine]) -> None:
    stack, engine = scripted
    response = await _call(stack.address, _request())
    assert response.text == "hello world"
    assert response.model_id == "scripted/echo"
    assert response.finish_reason == common_pb2.FINISH_REASON_STOP
    assert response.usage.output_tokens == 3
    assert len(engine.calls) == 1


@pytest.mark.parametrize(
    ("mutate", "code", "needle"),
    [
        (
            lambda r: setattr(r, "model", "nope/missing"),
            grpc.StatusCode.NOT_FOUND,
            "'nope/missing'",
        ),
        (
            lambda r: r.params.__setattr__("max_tokens", -5),
            grpc.StatusCode.INVALID_ARGUMENT,
            "max_tokens must be >= 0, got -5",
        ),
        (
            lambda r: r.params.__setattr__("max_tokens", 2_000_000_000),
            grpc.StatusCode.INVALID_ARGUMENT,
            "ceiling",
        ),
        (
            lambda r: r.params.__setattr__("max_tokens", 5000),
            grpc.StatusCode.INVALID_ARGUMENT,
            "context window of 4096",
        ),
        (
            lambda r: r.input.__setattr__("text", "   "),
            grpc.StatusCode.INVALID_ARGUMENT,
            "input.text is empty",
        ),
        (lambda r: r.ClearField("input"), grpc.StatusCode.INVALID_ARGUMENT, "input is empty"),
        (
            lambda r: r.input.__setattr__("text", "x" * (2 * 1024 * 1024)),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "limit is 1048576 bytes",
        ),
        (
            lambda r: r.params.__setattr__("temperature", 7.0),
            grpc.StatusCode.INVALID_ARGUMENT,
            "temperature",
        ),
    ],
    ids=[
        "unknown-model",
        "negative-max-tokens",
        "absurd-max-tokens",
        "over-context",
        "blank-text",
        "no-input",
        "oversize",
        "bad-temperature",
    ],
)
async def test_bad_input_is_refused_before_the_backend(
    scripted: tuple[Stack, ScriptedEngine],
    mutate: Callable[[gateway_pb2.GenerateRequest], object],
    code: grpc.StatusCode,
    needle: str,
) -> None:
    stack, engine = scripted
    req = _request()
    mutate(req)
    err = await _status(stack.address, req)
    assert err.code() == code
    assert needle in (err.details() or "")
    assert engine.calls == []


async def test_bad_chat_role_is_named(scripted: tuple[Stack, ScriptedEngine]) -> None:
    stack, engine = scripted
    req = gateway_pb2.GenerateRequest(model="scripted/echo")
    req.input.chat.messages.add(role="wizard", content="hi")
    err = await _status(stack.address, req)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "messages[0].role 'wizard'" in (err.details() or "")
    assert engine.calls == []


async def test_rate_limit_answers_resource_exhausted_with_retry_time(
    make_stack: StackFactory,
) -> None:
    engine = ScriptedEngine(limits=common_pb2.RateLimits(requests_per_minute=2))
    stack = await make_stack(roles=("registry", "gateway"), engines=[engine])
    await _call(stack.address, _request())
    await _call(stack.address, _request())
    err = await _status(stack.address, _request())
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "requests_per_minute=2" in (err.details() or "")
    assert "retry after" in (err.details() or "")
    retry_ms = int(trailers(err)[RETRY_AFTER_MS_KEY])
    assert 20_000 <= retry_ms <= 30_000  # one request refills every 30 s
    assert len(engine.calls) == 2


def _tokens_left(stack: Stack, model_id: str, tokens_per_minute: float) -> float:
    """The model's tokens-per-minute bucket level now, in the gateway's own limiter."""
    assert stack.limits is not None
    store = stack.limits.store
    assert isinstance(store, LocalBucketStore)
    return store.level(Bucket(Scope.model(model_id), "tokens", tokens_per_minute))


def _refill_since(started: float, tokens_per_minute: float) -> float:
    """The most a bucket can have refilled since `started` (it refills continuously)."""
    return (time.monotonic() - started) * tokens_per_minute / 60


async def test_tokens_per_minute_reserves_the_input_estimate_plus_max_tokens_up_front(
    make_stack: StackFactory,
) -> None:
    engine = ScriptedEngine(limits=common_pb2.RateLimits(tokens_per_minute=100), delay_s=0.5)
    stack = await make_stack(roles=("registry", "gateway"), engines=[engine])
    req = _request(text="hi", max_tokens=60)
    assert estimate_input_tokens(req.input) == 1
    started = time.monotonic()
    answer = asyncio.create_task(_call(stack.address, req))
    await engine.called.wait()  # the backend is answering: the reservation is held
    level = _tokens_left(stack, "scripted/echo", 100)
    assert 100 - 61 <= level <= 100 - 61 + _refill_since(started, 100)
    await answer


@pytest.mark.parametrize(
    ("reported_input", "used"),
    [(40, 40 + 3), (0, 1 + 3)],
    ids=["upstream-count", "no-upstream-count-keeps-the-estimate"],
)
async def test_tokens_per_minute_settles_the_upstream_input_count_and_refunds_the_rest(
    make_stack: StackFactory, reported_input: int, used: int
) -> None:
    engine = ScriptedEngine(
        limits=common_pb2.RateLimits(tokens_per_minute=100), input_tokens=reported_input
    )
    stack = await make_stack(roles=("registry", "gateway"), engines=[engine])
    req = _request(text="hi", max_tokens=60)  # the gateway estimates 1 input token
    started = time.monotonic()
    await _call(stack.address, req)
    # 1 + 60 reserved; settled at the upstream's input count (else the estimate) + 3 output.
    level = _tokens_left(stack, "scripted/echo", 100)
    assert 100 - used <= level <= 100 - used + _refill_since(started, 100)


async def test_backend_down_is_unavailable_naming_it(make_stack: StackFactory) -> None:
    engine = ScriptedEngine()
    backend = await make_stack(roles=("registry",), engines=[engine])
    gateway = await make_stack(roles=("gateway",), registry_address=backend.address)
    assert (await _call(gateway.address, _request())).text == "hello world"
    await backend.server.server.stop(0)  # the backend dies; the gateway's catalog still has it
    err = await _status(gateway.address, _request())
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert f"backend 'scripted' at {backend.address}" in (err.details() or "")


async def test_backend_error_keeps_its_code_and_fallback_model_is_used(
    make_stack: StackFactory,
) -> None:
    broken = ScriptedEngine(
        ("scripted/broken",), fail_with=BackendUnavailable("upstream 'x' is down")
    )
    good = ScriptedEngine(("scripted/good",), pieces=("ok",))
    stack = await make_stack(roles=("registry", "gateway"), engines=[broken, good])
    err = await _status(stack.address, _request("scripted/broken"))
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert "upstream 'x' is down" in (err.details() or "")
    req = _request("scripted/broken")
    req.fallback_models.append("scripted/good")
    response = await _call(stack.address, req)
    assert (response.model_id, response.text) == ("scripted/good", "ok")


@pytest.mark.parametrize("in_catalog", [True, False], ids=["backend-lost-it", "not-in-catalog"])
async def test_a_model_not_found_falls_back_to_the_next_model(
    make_stack: StackFactory, in_catalog: bool
) -> None:
    gone = ScriptedEngine(("scripted/gone",), fail_with=ModelNotFound("scripted/gone", "llama.cpp"))
    good = ScriptedEngine(("scripted/good",), pieces=("ok",))
    engines = [gone, good] if in_catalog else [good]
    stack = await make_stack(roles=("registry", "gateway"), engines=engines)
    req = _request("scripted/gone")
    req.fallback_models.append("scripted/good")
    response = await _call(stack.address, req)
    assert (response.model_id, response.text) == ("scripted/good", "ok")
    assert (len(gone.calls), len(good.calls)) == (int(in_catalog), 1)


async def test_no_fallback_once_the_answer_has_started_streaming(
    make_stack: StackFactory,
) -> None:
    broken = ScriptedEngine(
        ("scripted/broken",),
        pieces=("half", " an answer"),
        fail_with=BackendUnavailable("upstream 'x' went away"),
        fail_after=1,
    )
    good = ScriptedEngine(("scripted/good",), pieces=("ok",))
    stack = await make_stack(roles=("registry", "gateway"), engines=[broken, good])
    req = _request("scripted/broken")
    req.fallback_models.append("scripted/good")
    received: list[str] = []
    async with grpc.aio.insecure_channel(stack.address) as channel:
        call = gateway_pb2_grpc.GatewayServiceStub(channel).GenerateStream(req, timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for chunk in call:
                received.append(chunk.text)
    # The caller holds "half": another model's answer cannot be appended to it, and
    # UNAVAILABLE would invite a retry that does just that (tests/gateway/test_stream_cut.py).
    assert received == ["half"]
    assert info.value.code() == grpc.StatusCode.ABORTED
    assert (info.value.details() or "") == (
        "the answer of 'scripted/broken' was cut short after 1 chunk (4 characters) "
        "had reached the caller: upstream 'x' went away"
    )
    assert good.calls == []


async def test_stream_without_finish_is_aborted_and_keeps_its_whole_reservation(
    make_stack: StackFactory,
) -> None:
    engine = ScriptedEngine(finish=False, limits=common_pb2.RateLimits(tokens_per_minute=100))
    stack = await make_stack(roles=("registry", "gateway"), engines=[engine])
    started = time.monotonic()
    err = await _status(stack.address, _request(max_tokens=40))
    assert err.code() == grpc.StatusCode.ABORTED
    assert (err.details() or "") == (
        "the answer of 'scripted/echo' was cut short after 3 chunks (11 characters) had reached "
        f"the caller: backend 'scripted' at {stack.address} ended the stream for 'scripted/echo' "
        "without a finish reason: the answer is truncated"
    )
    # Nobody knows what a truncated answer cost upstream: the whole 1 + 40 stays spent.
    level = _tokens_left(stack, "scripted/echo", 100)
    assert 100 - 41 <= level <= 100 - 41 + _refill_since(started, 100)
