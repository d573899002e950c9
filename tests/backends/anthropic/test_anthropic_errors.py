"""Every documented Anthropic error status becomes the one modelyard error it means."""

from __future__ import annotations

import socket

import pytest
from backends.anthropic.anthropic_calls import collect, endpoint_of
from support.fake_anthropic import FakeAnthropic

from modelyard.backends.anthropic.engine import AnthropicEngine
from modelyard.backends.openai_compat.providers import ProviderEndpoint
from modelyard_client.errors import (
    BackendUnavailable,
    ContentRejected,
    ContextLengthExceeded,
    InvalidRequest,
    ModelNotFound,
    ProviderAccessDenied,
    ProviderAuthFailed,
    ProviderError,
    RateLimited,
)


async def test_429_with_retry_after_waits_that_long(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    fake.fail(
        429,
        "rate_limit_error",
        "Number of requests has exceeded your rate limit",
        {"retry-after": "7"},
    )
    with pytest.raises(RateLimited) as caught:
        await collect(engine)
    assert caught.value.retry_after_s == 7.0
    assert caught.value.message.startswith(
        "upstream 'claude' rate-limited the request (rate_limit_error): "
        "Number of requests has exceeded your rate limit"
    )


async def test_429_without_retry_after_waits_one_second(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    fake.fail(429, "rate_limit_error", "slow down")
    with pytest.raises(RateLimited) as caught:
        await collect(engine)
    assert caught.value.retry_after_s == 1.0


async def test_529_overloaded_is_backend_unavailable(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    fake.fail(529, "overloaded_error", "Overloaded")
    with pytest.raises(BackendUnavailable) as caught:
        await collect(engine)
    assert (
        caught.value.message == "upstream 'claude' answered HTTP 529 (overloaded_error): Overloaded"
    )
    assert caught.value.retry_after_s is None


async def test_500_with_retry_after_carries_the_delay(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    fake.fail(500, "api_error", "Internal server error", {"retry-after": "3"})
    with pytest.raises(BackendUnavailable) as caught:
        await collect(engine)
    assert caught.value.retry_after_s == 3.0


async def test_a_5xx_page_that_is_not_json_is_still_unavailable(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    fake.fail(502, "", "", raw="<html>Bad Gateway</html>")
    with pytest.raises(BackendUnavailable, match=r"HTTP 502: <html>Bad Gateway</html>"):
        await collect(engine)


async def test_401_is_the_gateways_provider_key(fake: FakeAnthropic) -> None:
    served = AnthropicEngine(endpoint_of(fake, api_key="sk-ant-wrong"))
    await served.start()
    try:
        with pytest.raises(ProviderAuthFailed) as caught:
            await collect(served)
    finally:
        await served.close()
    assert type(caught.value) is ProviderAuthFailed
    assert "this gateway's API key for the provider" in caught.value.message
    assert "not the caller's credentials" in caught.value.message
    assert "sk-ant-wrong" not in caught.value.message


async def test_403_is_access_denied_to_the_gateways_key(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    fake.fail(
        403,
        "permission_error",
        "Your API key does not have permission to use the specified resource.",
    )
    with pytest.raises(ProviderAccessDenied, match="HTTP 403; not the caller's credentials"):
        await collect(engine)


async def test_404_for_a_model_is_model_not_found(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    with pytest.raises(ModelNotFound) as caught:
        await collect(engine, model_id="claude/claude-retired-1")
    assert caught.value.model_id == "claude/claude-retired-1"
    assert "model: claude-retired-1" in caught.value.message


async def test_a_prompt_too_long_is_context_length_exceeded(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    fake.fail(400, "invalid_request_error", "prompt is too long: 208656 tokens > 200000 maximum")
    with pytest.raises(ContextLengthExceeded) as caught:
        await collect(engine)
    assert caught.value.provider_code == "invalid_request_error"
    assert "208656 tokens > 200000 maximum" in caught.value.message


async def test_content_filtering_is_content_rejected(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    fake.fail(400, "invalid_request_error", "Output blocked by content filtering policy")
    with pytest.raises(ContentRejected):
        await collect(engine)


async def test_another_400_is_invalid_request(fake: FakeAnthropic, engine: AnthropicEngine) -> None:
    fake.fail(
        400,
        "invalid_request_error",
        "temperature and top_p cannot both be specified for this model",
    )
    with pytest.raises(InvalidRequest) as caught:
        await collect(engine)
    assert type(caught.value) is InvalidRequest
    assert caught.value.message == (
        "upstream 'claude' rejected the request (invalid_request_error): "
        "temperature and top_p cannot both be specified for this model"
    )


async def test_413_is_invalid_request_over_the_size_limit(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    fake.fail(413, "request_too_large", "Request exceeds the maximum allowed number of bytes.")
    with pytest.raises(InvalidRequest, match="over Anthropic's Messages API's size limit"):
        await collect(engine)


async def test_an_undocumented_4xx_is_a_provider_error(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    fake.fail(402, "billing_error", "Your credit balance is too low")
    with pytest.raises(ProviderError) as caught:
        await collect(engine)
    assert type(caught.value) is ProviderError
    assert "HTTP 402 (billing_error)" in caught.value.message


async def test_an_echoed_key_never_reaches_the_error(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    fake.fail(
        400,
        "invalid_request_error",
        "bad header x-api-key: sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123",
    )
    with pytest.raises(InvalidRequest) as caught:
        await collect(engine)
    assert "abcdefghijklmnop" not in caught.value.message
    assert "[REDACTED]" in caught.value.message


async def test_an_unreachable_api_is_backend_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once closed
    served = AnthropicEngine(
        ProviderEndpoint("claude", f"http://127.0.0.1:{port}/v1", api_key="k", models=("m",))
    )
    await served.start()
    try:
        with pytest.raises(
            BackendUnavailable, match=rf"at http://127.0.0.1:{port}/v1 is unreachable"
        ):
            await collect(served, model_id="claude/m")
    finally:
        await served.close()
