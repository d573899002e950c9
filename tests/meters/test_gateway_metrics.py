"""A load of mixed calls through a real stack: the scrape endpoint counts exactly what was
sent, under the GenAI conventions' names, with their attributes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import grpc
import pytest
from conftest import StackFactory
from prometheus_client.parser import text_string_to_metric_families
from support.scripted_engine import ScriptedEngine

from modelyard.meters import Meters
from modelyard.meters.prometheus import prometheus_name
from modelyard_client.errors import BackendUnavailable
from modelyard_client.v1 import gateway_pb2, gateway_pb2_grpc

GENERATE = "modelyard.v1.GatewayService/Generate"
STREAM = "modelyard.v1.GatewayService/GenerateStream"
README = Path(__file__).resolve().parents[2] / "README.md"


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a scrape by its name and labels (the empty ones left out)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = frozenset((k, v) for k, v in sample.labels.items() if v)
            out[sample.name, labels] = sample.value
    return out


def _value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


async def _scrape(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return await response.text()


def _request(model: str, max_tokens: int = 8) -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=model, no_cache=True)
    request.input.text = "hi"
    request.params.max_tokens = max_tokens
    return request


async def test_mixed_calls_are_counted_exactly_under_the_documented_names(
    make_stack: StackFactory,
) -> None:
    engine = ScriptedEngine(pieces=("hel", "lo", "!"), input_tokens=7)
    stack = await make_stack([engine], metrics_listen="127.0.0.1:0")
    assert stack.metrics_listener is not None
    async with grpc.aio.insecure_channel(stack.address) as channel:
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        for _ in range(4):
            await gateway.Generate(_request("scripted/echo"))
        for _ in range(3):
            assert [c async for c in gateway.GenerateStream(_request("scripted/echo"))]
        for bad in (_request("nope/missing"), _request("scripted/echo", max_tokens=-1)):
            with pytest.raises(grpc.aio.AioRpcError):
                await gateway.Generate(bad)
        with pytest.raises(grpc.aio.AioRpcError):
            async for _ in gateway.GenerateStream(_request("nope/missing")):
                pass
    samples = _samples(await _scrape(stack.metrics_listener.url))

    requests = "modelyard_requests_total"
    assert _value(samples, requests, rpc_method=GENERATE, rpc_response_status_code="OK") == 4
    assert _value(samples, requests, rpc_method=STREAM, rpc_response_status_code="OK") == 3
    assert _value(samples, requests, rpc_method=GENERATE, rpc_response_status_code="NOT_FOUND") == 1
    assert (
        _value(samples, requests, rpc_method=GENERATE, rpc_response_status_code="INVALID_ARGUMENT")
        == 1
    )
    assert _value(samples, requests, rpc_method=STREAM, rpc_response_status_code="NOT_FOUND") == 1

    served = {"gen_ai_response_model": "scripted/echo", "gen_ai_provider_name": "scripted"}
    duration = "gen_ai_server_request_duration_seconds_count"
    every = _value(samples, duration)
    assert every == 10  # every Generate and GenerateStream, the refused ones too
    not_found = _value(
        samples, duration, error_type="MODEL_NOT_FOUND", gen_ai_request_model="_OTHER"
    )
    assert not_found == 2  # a name neither the catalog nor the routes know: one series
    assert _value(samples, duration, error_type="INVALID_REQUEST") == 1
    assert _value(samples, duration, gen_ai_operation_name="text_completion", **served) == 7
    assert _value(samples, "gen_ai_server_time_to_first_token_seconds_count", **served) == 7
    # Three output tokens: two after the first, one time per output token per answer.
    assert _value(samples, "gen_ai_server_time_per_output_token_seconds_count", **served) == 7
    tokens = "gen_ai_client_token_usage"
    assert _value(samples, tokens + "_count", gen_ai_token_type="input", **served) == 7
    assert _value(samples, tokens + "_sum", gen_ai_token_type="input", **served) == 7 * 7
    assert _value(samples, tokens + "_sum", gen_ai_token_type="output", **served) == 7 * 3
    # The buckets are the conventions': 7 input tokens fall in (4, 16].
    bucket = tokens + "_bucket"
    assert _value(samples, bucket, gen_ai_token_type="input", le="4.0", **served) == 0
    assert _value(samples, bucket, gen_ai_token_type="input", le="16.0", **served) == 7


async def test_the_readme_names_every_instrument() -> None:
    text = README.read_text()
    missing = [
        (i.name, prometheus_name(i))
        for i in Meters().instruments()
        if f"`{i.name}`" not in text or prometheus_name(i) not in text
    ]
    assert missing == []


async def test_a_busy_metrics_address_stops_the_start_naming_the_flag(
    make_stack: StackFactory,
) -> None:
    first = await make_stack(metrics_listen="127.0.0.1:0")
    assert first.metrics_listener is not None
    taken = f"127.0.0.1:{first.metrics_listener.port}"
    with pytest.raises(OSError, match="--metrics-listen / MODELYARD_METRICS_ADDRESS") as caught:
        await make_stack(metrics_listen=taken)
    assert taken in str(caught.value)


async def test_a_cancelled_stream_is_recorded_as_cancelled(make_stack: StackFactory) -> None:
    engine = ScriptedEngine(pieces=("a",) * 50, delay_s=0.05)
    stack = await make_stack([engine], metrics_listen="127.0.0.1:0")
    assert stack.metrics_listener is not None
    async with grpc.aio.insecure_channel(stack.address) as channel:
        call = gateway_pb2_grpc.GatewayServiceStub(channel).GenerateStream(
            _request("scripted/echo")
        )
        async for _ in call:
            call.cancel()
            break
    for _ in range(100):  # the server sees the cancel a moment later
        samples = _samples(await _scrape(stack.metrics_listener.url))
        if _value(samples, "gen_ai_server_request_duration_seconds_count", error_type="cancelled"):
            break
        await asyncio.sleep(0.02)
    assert (
        _value(samples, "gen_ai_server_request_duration_seconds_count", error_type="cancelled") == 1
    )
    assert _value(samples, "gen_ai_server_time_to_first_token_seconds_count") == 0


async def test_each_attempt_is_a_client_operation_with_its_error(
    make_stack: StackFactory,
) -> None:
    broken = ScriptedEngine(("scripted/broken",), fail_with=BackendUnavailable("upstream down"))
    stack = await make_stack([broken, ScriptedEngine()], metrics_listen="127.0.0.1:0")
    assert stack.metrics_listener is not None
    request = _request("scripted/broken")
    request.fallback_models.append("scripted/echo")
    async with grpc.aio.insecure_channel(stack.address) as channel:
        answer = await gateway_pb2_grpc.GatewayServiceStub(channel).Generate(request)
    assert answer.model_id == "scripted/echo"
    samples = _samples(await _scrape(stack.metrics_listener.url))
    attempts = "gen_ai_client_operation_duration_seconds_count"
    assert _value(samples, attempts) == 2  # the failed attempt and its fallback
    failed = _value(
        samples, attempts, gen_ai_request_model="scripted/broken", error_type="BACKEND_UNAVAILABLE"
    )
    assert failed == 1
    assert _value(samples, attempts, gen_ai_response_model="scripted/echo") == 1
    # The call itself: one answer, by the model that gave it.
    served = _value(
        samples,
        "gen_ai_server_request_duration_seconds_count",
        gen_ai_response_model="scripted/echo",
    )
    assert served == 1
