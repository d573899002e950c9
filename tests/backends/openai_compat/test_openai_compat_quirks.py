"""Mistral's and OpenRouter's error bodies and statuses as modelyard errors
(`upstream.raise_for_status`, `upstream.error_detail`), against the fakes of
`hosted_fakes` (references named there), through the engine and a real stack."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import grpc
import pytest
from backends.openai_compat.hosted_fakes import (
    mistral_error,
    mistral_extra_forbidden,
    openrouter_error,
    openrouter_processing_then,
)
from backends.openai_compat.openai_fake import STACK_ROLES, FakeUpstream, chunk, usage_chunk
from conftest import StackFactory

from modelyard.backends.openai_compat.engine import OpenAICompatEngine
from modelyard.backends.openai_compat.providers import ProviderEndpoint
from modelyard.backends.openai_compat.upstream import error_detail
from modelyard.config import parse_config
from modelyard_client.errors import (
    BackendUnavailable,
    ContentRejected,
    InvalidRequest,
    ModelyardError,
    ProviderAccessDenied,
    RateLimited,
)
from modelyard_client.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc


@pytest.fixture
async def engine_for(
    upstream: FakeUpstream,
) -> AsyncIterator[dict[str, OpenAICompatEngine]]:
    engines: dict[str, OpenAICompatEngine] = {}
    for name in ("mistral", "openrouter"):
        endpoint = ProviderEndpoint(name, f"{upstream.url}/v1", models=("fake-model",))
        engines[name] = OpenAICompatEngine(endpoint)
        await engines[name].start()
    yield engines
    for engine in engines.values():
        await engine.close()


async def _call(engine: OpenAICompatEngine) -> str:
    text = []
    async for piece in engine.infer_stream(
        f"{engine.backend}/fake-model",
        common_pb2.Input(text="Hi"),
        common_pb2.GenerationParams(),
    ):
        text.append(piece.text)
    return "".join(text)


# ---- Mistral ---------------------------------------------------------------------------


async def test_mistral_s_validation_422_names_each_field(
    upstream: FakeUpstream, engine_for: dict[str, OpenAICompatEngine]
) -> None:
    upstream.fail(422, mistral_extra_forbidden({"top_k": 5, "user": "x"}))
    with pytest.raises(InvalidRequest) as info:
        await _call(engine_for["mistral"])
    assert info.value.message == (
        "upstream 'mistral' rejected the request: body.top_k: Extra inputs are not "
        "permitted; body.user: Extra inputs are not permitted"
    )


async def test_mistral_s_flat_error_body_gives_its_message(
    upstream: FakeUpstream, engine_for: dict[str, OpenAICompatEngine]
) -> None:
    upstream.fail(400, mistral_error("Invalid model: nope", "invalid_model", "1500"))
    with pytest.raises(InvalidRequest, match=r"rejected the request: Invalid model: nope$"):
        await _call(engine_for["mistral"])


async def test_mistral_s_429_is_rate_limited_with_its_message(
    upstream: FakeUpstream, engine_for: dict[str, OpenAICompatEngine]
) -> None:
    upstream.fail(
        429,
        mistral_error("Requests rate limit exceeded", "rate_limited", "1300"),
        {"Retry-After": "3"},
    )
    with pytest.raises(RateLimited, match="Requests rate limit exceeded") as info:
        await _call(engine_for["mistral"])
    assert info.value.retry_after_s == 3.0


def test_mistral_s_older_detail_as_json_text_is_read_too() -> None:
    body = mistral_error(
        '{"detail":[{"type":"extra_forbidden","loc":["body","frequency_penalty"],'
        '"msg":"Extra inputs are not permitted","input":0.0}]}',
        "internal_error_proxy",
        "1000",
    )
    assert error_detail(json.dumps(body)) == (
        "body.frequency_penalty: Extra inputs are not permitted",
        "1000",
    )


# ---- OpenRouter ------------------------------------------------------------------------


async def test_openrouter_402_out_of_credits_is_provider_access_denied(
    upstream: FakeUpstream, engine_for: dict[str, OpenAICompatEngine]
) -> None:
    upstream.fail(
        402,
        openrouter_error(
            402,
            "Insufficient credits. Add more using https://openrouter.ai/credits",
            {"limit_source": "openrouter_credits"},
        ),
    )
    with pytest.raises(ProviderAccessDenied) as info:
        await _call(engine_for["openrouter"])
    assert "out of credits (HTTP 402; not the caller's)" in info.value.message
    assert "Insufficient credits" in info.value.message


async def test_openrouter_403_moderation_is_content_rejected_with_the_reasons(
    upstream: FakeUpstream, engine_for: dict[str, OpenAICompatEngine]
) -> None:
    upstream.fail(
        403,
        openrouter_error(
            403,
            'gpt-4o requires moderation on OpenAI. Your input was flagged for "violence".',
            {
                "reasons": ["violence"],
                "flagged_input": "...",
                "provider_name": "OpenAI",
                "model_slug": "openai/gpt-4o",
            },
        ),
    )
    with pytest.raises(ContentRejected, match=r"flagged: \['violence'\]") as info:
        await _call(engine_for["openrouter"])
    assert info.value.provider_code == "moderation"


async def test_openrouter_403_without_moderation_is_still_the_key_s_denial(
    upstream: FakeUpstream, engine_for: dict[str, OpenAICompatEngine]
) -> None:
    upstream.fail(403, openrouter_error(403, "Key disabled"))
    with pytest.raises(ProviderAccessDenied, match="Key disabled"):
        await _call(engine_for["openrouter"])


@pytest.mark.parametrize(
    ("status", "message"),
    [(408, "Request timed out"), (502, "Provider returned error"), (503, "No endpoints found")],
)
async def test_openrouter_timeouts_and_provider_failures_are_backend_unavailable(
    status: int,
    message: str,
    upstream: FakeUpstream,
    engine_for: dict[str, OpenAICompatEngine],
) -> None:
    metadata = {"provider_name": "Fireworks", "raw": "upstream connect error"}
    upstream.fail(status, openrouter_error(status, message, metadata))
    with pytest.raises(BackendUnavailable) as info:
        await _call(engine_for["openrouter"])
    assert info.value.message == (
        f"upstream 'openrouter' answered HTTP {status}: {message} "
        "(Fireworks said: upstream connect error)"
    )


async def test_openrouter_429_without_retry_after_waits_the_default(
    upstream: FakeUpstream, engine_for: dict[str, OpenAICompatEngine]
) -> None:
    upstream.fail(429, openrouter_error(429, "Rate limit exceeded: free-models-per-min"))
    with pytest.raises(RateLimited, match="free-models-per-min") as info:
        await _call(engine_for["openrouter"])
    assert info.value.retry_after_s == 1.0


async def test_openrouter_s_processing_comments_are_skipped(
    upstream: FakeUpstream, engine_for: dict[str, OpenAICompatEngine]
) -> None:
    openrouter_processing_then(
        upstream, [chunk("Hello"), chunk(finish_reason="stop"), usage_chunk(3, 1)]
    )
    assert await _call(engine_for["openrouter"]) == "Hello"


async def test_openrouter_s_mid_stream_error_event_fails_the_stream(
    upstream: FakeUpstream, engine_for: dict[str, OpenAICompatEngine]
) -> None:
    event = {
        **openrouter_error(502, "Provider disconnected"),
        "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}],
    }
    upstream.stream([chunk("Hel"), event])
    with pytest.raises(ModelyardError, match="Provider disconnected"):
        await _call(engine_for["openrouter"])


# ---- through a real stack ----------------------------------------------------------------


@pytest.fixture
async def openrouter_gateway(
    upstream: FakeUpstream, make_stack: StackFactory
) -> AsyncIterator[gateway_pb2_grpc.GatewayServiceAsyncStub]:
    config = parse_config(
        f"""
model_system:
  backends:
    openrouter:
      api_key: "${{OPENROUTER_API_KEY}}"
      base_url: "{upstream.url}/v1"
      models: [fake-model]
""",
        env={"OPENROUTER_API_KEY": "sk-or-test"},
    )
    stack = await make_stack(roles=STACK_ROLES, config=config)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        yield gateway_pb2_grpc.GatewayServiceStub(channel)


async def test_the_caller_hears_openrouter_s_402_as_permission_denied(
    upstream: FakeUpstream, openrouter_gateway: gateway_pb2_grpc.GatewayServiceAsyncStub
) -> None:
    upstream.fail(402, openrouter_error(402, "Insufficient credits"))
    request = gateway_pb2.GenerateRequest(model="openrouter/fake-model")
    request.input.text = "Hi"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await openrouter_gateway.Generate(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "out of credits" in (info.value.details() or "")
