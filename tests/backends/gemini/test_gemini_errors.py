"""What the gemini engine makes of an HTTP failure: Google's error body and status, mapped
onto modelyard's classes, with the delay to retry after and no credential in the message."""

from __future__ import annotations

import pytest
from backends.gemini.gemini_engines import collect, studio_engine
from support.fake_gemini import API_KEY, FakeGemini, google_error, response, retry_info

from modelyard.backends.gemini import GeminiEngine
from modelyard_client.errors import (
    BackendUnavailable,
    ContextLengthExceeded,
    InvalidRequest,
    ModelNotFound,
    Overloaded,
    ProviderAccessDenied,
    ProviderAuthFailed,
    ProviderError,
    RateLimited,
)

QUOTA = "You exceeded your current quota, please check your plan and billing details."


async def test_a_429_with_retry_after_waits_what_the_header_says(
    fake: FakeGemini, studio: GeminiEngine
) -> None:
    fake.fail(
        429,
        google_error(429, "RESOURCE_EXHAUSTED", QUOTA, [retry_info("22s")]),
        headers={"Retry-After": "3"},
    )
    with pytest.raises(RateLimited) as caught:
        await collect(studio)
    assert caught.value.retry_after_s == 3.0  # the header wins over the body
    assert "RESOURCE_EXHAUSTED: You exceeded your current quota" in caught.value.message


async def test_a_429_without_retry_after_waits_the_bodys_retry_info(
    fake: FakeGemini, studio: GeminiEngine
) -> None:
    fake.fail(429, google_error(429, "RESOURCE_EXHAUSTED", QUOTA, [retry_info("22.5s")]))
    with pytest.raises(RateLimited) as caught:
        await collect(studio)
    assert caught.value.retry_after_s == 22.5


async def test_a_429_that_says_nothing_of_when_waits_one_second(
    fake: FakeGemini, studio: GeminiEngine
) -> None:
    fake.fail(429, google_error(429, "RESOURCE_EXHAUSTED", QUOTA))
    with pytest.raises(RateLimited) as caught:
        await collect(studio)
    assert caught.value.retry_after_s == 1.0


async def test_a_bad_key_is_the_gateways_provider_key_and_is_not_shown(
    fake: FakeGemini,
) -> None:
    engine = studio_engine(fake, lambda: "AIzaSyWrong-key-9876543210zyxwvutsrqpon")
    fake.stream([response("never", finish="STOP")])
    await engine.start()
    try:
        with pytest.raises(ProviderAuthFailed) as caught:
            await collect(engine)
    finally:
        await engine.close()
    assert type(caught.value) is ProviderAuthFailed
    message = caught.value.message
    assert "rejected this gateway's API key for the provider" in message
    assert "not the caller's credentials" in message
    assert "API key not valid" in message
    assert "AIzaSyWrong" not in message


async def test_a_403_is_access_denied_to_the_gateways_key(
    fake: FakeGemini, studio: GeminiEngine
) -> None:
    fake.fail(
        403,
        google_error(
            403, "PERMISSION_DENIED", "Your API key doesn't have the required permissions."
        ),
    )
    with pytest.raises(ProviderAccessDenied) as caught:
        await collect(studio)
    assert "denied this gateway's API key for the provider (HTTP 403" in caught.value.message


async def test_failed_precondition_is_access_denied_too(
    fake: FakeGemini, studio: GeminiEngine
) -> None:
    message = "Gemini API free tier is not available in your country. Please enable billing."
    fake.fail(400, google_error(400, "FAILED_PRECONDITION", message))
    with pytest.raises(ProviderAccessDenied) as caught:
        await collect(studio)
    assert "FAILED_PRECONDITION: Gemini API free tier" in caught.value.message


async def test_a_model_the_api_does_not_have_is_model_not_found(
    fake: FakeGemini, studio: GeminiEngine
) -> None:
    with pytest.raises(ModelNotFound) as caught:
        await collect(studio, model_id="gemini/gemini-9-ultra")
    assert caught.value.model_id == "gemini/gemini-9-ultra"
    assert "models/gemini-9-ultra is not found for API version v1beta" in caught.value.message


async def test_a_prompt_over_the_window_is_context_length_exceeded(
    fake: FakeGemini, studio: GeminiEngine
) -> None:
    fake.fail(
        400,
        google_error(
            400,
            "INVALID_ARGUMENT",
            "The input token count (1200000) exceeds the maximum number of tokens allowed "
            "(1048576).",
        ),
    )
    with pytest.raises(ContextLengthExceeded) as caught:
        await collect(studio)
    assert caught.value.provider_code == "INVALID_ARGUMENT"


async def test_another_invalid_argument_is_invalid_request(
    fake: FakeGemini, studio: GeminiEngine
) -> None:
    fake.fail(
        400,
        google_error(
            400, "INVALID_ARGUMENT", "Invalid value at 'generation_config.temperature' (TYPE_FLOAT)"
        ),
    )
    with pytest.raises(InvalidRequest) as caught:
        await collect(studio)
    assert type(caught.value) is InvalidRequest
    assert "generation_config.temperature" in caught.value.message


@pytest.mark.parametrize(
    ("status", "name"), [(500, "INTERNAL"), (503, "UNAVAILABLE"), (504, "DEADLINE_EXCEEDED")]
)
async def test_server_failures_are_backend_unavailable(
    fake: FakeGemini, studio: GeminiEngine, status: int, name: str
) -> None:
    fake.fail(status, google_error(status, name, "An internal error has occurred."))
    with pytest.raises(BackendUnavailable) as caught:
        await collect(studio)
    assert f"answered HTTP {status}: {name}: An internal error" in caught.value.message


async def test_a_503_with_retry_after_keeps_the_delay(
    fake: FakeGemini, studio: GeminiEngine
) -> None:
    fake.fail(
        503,
        google_error(503, "UNAVAILABLE", "The model is overloaded."),
        headers={"Retry-After": "12"},
    )
    with pytest.raises(BackendUnavailable) as caught:
        await collect(studio)
    assert caught.value.retry_after_s == 12.0


async def test_a_body_that_is_no_google_error_is_still_reported(
    fake: FakeGemini, studio: GeminiEngine
) -> None:
    fake.fail(418, {"teapot": True})
    with pytest.raises(ProviderError) as caught:
        await collect(studio)
    assert "answered HTTP 418" in caught.value.message


async def test_an_upstream_echoing_the_key_does_not_leak_it(
    fake: FakeGemini, studio: GeminiEngine
) -> None:
    fake.fail(400, google_error(400, "INVALID_ARGUMENT", f"bad request with key={API_KEY}"))
    with pytest.raises(InvalidRequest) as caught:
        await collect(studio)
    assert API_KEY not in caught.value.message


async def test_an_unreachable_api_is_backend_unavailable(fake: FakeGemini) -> None:
    engine = studio_engine(fake)
    await engine.start()
    await fake.stop()
    try:
        with pytest.raises(BackendUnavailable) as caught:
            await collect(engine)
    finally:
        await engine.close()
    assert f"upstream 'gemini' at {fake.url} is unreachable" in caught.value.message


async def test_load_checks_the_model_with_count_tokens(
    fake: FakeGemini, studio: GeminiEngine
) -> None:
    assert await studio.load("gemini/gemini-2.5-flash") >= 0
    assert fake.calls[-1].path == "/v1beta/models/gemini-2.5-flash:countTokens"
    with pytest.raises(ModelNotFound):
        await studio.load("gemini/gemini-9-ultra")
    assert await studio.unload("gemini/gemini-2.5-flash") is False


async def test_a_call_beyond_the_slots_and_the_queue_is_refused_unsent(fake: FakeGemini) -> None:
    engine = studio_engine(fake, max_concurrency=1, max_queue=0)
    fake.stream([response("ok", finish="STOP")])
    try:
        async with engine.admission.slot():  # the one slot is taken
            with pytest.raises(Overloaded) as caught:
                await collect(engine)
    finally:
        await engine.close()
    assert caught.value.scope == "upstream:gemini"
    assert "backends.gemini.max_concurrency=1, max_queue=0" in caught.value.message
    assert fake.calls == []
