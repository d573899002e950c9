"""Every way a Cohere call fails, as the error the gateway acts on (upstream.py, chat_stream.py)."""

from __future__ import annotations

import pytest
from backends.cohere.calls import MODEL, collect
from support.fake_cohere import (
    FakeCohere,
    content_delta,
    content_start,
    message_end,
    message_start,
    stream_events,
)

from modelyard.backends.cohere.engine import CohereEngine
from modelyard.backends.engine import Piece
from modelyard.backends.openai_compat.providers import ProviderEndpoint
from modelyard_client.errors import (
    BackendUnavailable,
    ContextLengthExceeded,
    InvalidRequest,
    ModelNotFound,
    ProviderAccessDenied,
    ProviderAuthFailed,
    ProviderError,
    ProviderProtocolError,
    RateLimited,
    StreamTruncated,
)

WHERE = "upstream 'cohere'"


async def test_429_with_retry_after_waits_what_it_says(
    cohere: FakeCohere, engine: CohereEngine
) -> None:
    message = "You are past the per minute request limit, please wait and try again later."
    cohere.fail(429, {"message": message}, {"Retry-After": "7"})
    with pytest.raises(RateLimited) as caught:
        await collect(engine)
    assert caught.value.retry_after_s == 7.0
    assert caught.value.message == (
        f"{WHERE} rate-limited the request: {message}; retry after 7.000s"
    )


async def test_429_without_retry_after_waits_one_second(
    cohere: FakeCohere, engine: CohereEngine
) -> None:
    cohere.fail(
        429, {"message": "trial token rate limit exceeded, limit is 100000 tokens per minute"}
    )
    with pytest.raises(RateLimited) as caught:
        await collect(engine)
    assert caught.value.retry_after_s == 1.0


@pytest.mark.parametrize("status", [500, 503])
async def test_5xx_is_backend_unavailable_with_its_retry_after(
    cohere: FakeCohere, engine: CohereEngine, status: int
) -> None:
    cohere.fail(status, {"message": "internal server error"}, {"Retry-After": "3"})
    with pytest.raises(BackendUnavailable) as caught:
        await collect(engine)
    assert caught.value.retry_after_s == 3.0
    assert caught.value.message.startswith(f"{WHERE} answered HTTP {status}: internal server error")


async def test_499_request_cancelled_is_retryable_unavailability(
    cohere: FakeCohere, engine: CohereEngine
) -> None:
    cohere.fail(499, {"message": "request cancelled"})
    with pytest.raises(BackendUnavailable) as caught:
        await collect(engine)
    assert caught.value.message == f"{WHERE} cancelled the request (HTTP 499): request cancelled"
    assert caught.value.retry_after_s is None


async def test_a_wrong_key_is_the_gateway_s_key_not_the_caller_s(cohere: FakeCohere) -> None:
    engine = CohereEngine(
        ProviderEndpoint("cohere", cohere.url, api_key="co-wrong", models=("command-a-03-2025",))
    )
    await engine.start()
    try:
        with pytest.raises(ProviderAuthFailed) as caught:
            await collect(engine)
    finally:
        await engine.close()
    assert type(caught.value) is ProviderAuthFailed
    assert caught.value.message == (
        f"{WHERE} rejected this gateway's API key for Cohere (HTTP 401; not the caller's "
        "credentials): invalid api token"
    )


async def test_498_invalid_token_is_auth_failed_too(
    cohere: FakeCohere, engine: CohereEngine
) -> None:
    cohere.fail(498, {"message": "invalid api token"})
    with pytest.raises(ProviderAuthFailed) as caught:
        await collect(engine)
    assert type(caught.value) is ProviderAuthFailed
    assert "(HTTP 498; not the caller's credentials): invalid api token" in caught.value.message


async def test_402_payment_required_denies_the_gateway_s_account(
    cohere: FakeCohere, engine: CohereEngine
) -> None:
    message = (
        "Please add or update your payment method at "
        "https://dashboard.cohere.com/billing?tab=payment to continue"
    )
    cohere.fail(402, {"message": message})
    with pytest.raises(ProviderAccessDenied) as caught:
        await collect(engine)
    assert "payment required" in caught.value.message
    assert caught.value.message.endswith(f"(HTTP 402; not the caller's): {message}")


async def test_403_is_access_denied(cohere: FakeCohere, engine: CohereEngine) -> None:
    cohere.fail(403, {"id": "abc", "message": "forbidden"})
    with pytest.raises(ProviderAccessDenied) as caught:
        await collect(engine)
    assert caught.value.message.endswith("(HTTP 403; not the caller's credentials): forbidden")


async def test_404_for_the_model_is_model_not_found(
    cohere: FakeCohere, engine: CohereEngine
) -> None:
    cohere.models = ["command-r-08-2024"]  # the fake no longer serves the engine's model
    with pytest.raises(ModelNotFound) as caught:
        await collect(engine)
    assert caught.value.model_id == MODEL
    assert "model 'command-a-03-2025' not found" in caught.value.message


async def test_too_many_tokens_in_the_prompt_is_context_length_exceeded(
    cohere: FakeCohere, engine: CohereEngine
) -> None:
    message = (
        "too many tokens: total number of tokens in the prompt cannot exceed 4081 - received "
        "4292. Try using a shorter prompt, or enabling prompt truncating."
    )
    cohere.fail(400, {"message": message})
    with pytest.raises(ContextLengthExceeded) as caught:
        await collect(engine)
    assert caught.value.message == f"{WHERE} rejected the request: {message}"


async def test_max_tokens_over_the_model_s_output_limit_is_an_invalid_max_tokens(
    cohere: FakeCohere, engine: CohereEngine
) -> None:
    message = (
        "too many tokens: max tokens must be less than or equal to 4096, the maximum output "
        "for this model - received 8192."
    )
    cohere.fail(400, {"message": message})
    with pytest.raises(InvalidRequest) as caught:
        await collect(engine)
    assert type(caught.value) is InvalidRequest
    assert caught.value.field == "params.max_tokens"


@pytest.mark.parametrize("status", [400, 422])
async def test_an_invalid_request_keeps_cohere_s_message(
    cohere: FakeCohere, engine: CohereEngine, status: int
) -> None:
    message = "invalid request: temperature must be between 0 and 1.0 inclusive."
    cohere.fail(status, {"message": message})
    with pytest.raises(InvalidRequest) as caught:
        await collect(engine)
    assert type(caught.value) is InvalidRequest
    assert caught.value.message == f"{WHERE} rejected the request: {message}"


async def test_another_status_with_a_body_that_is_not_json_is_a_provider_error(
    cohere: FakeCohere, engine: CohereEngine
) -> None:
    cohere.fail(418, "<html>teapot</html>")
    with pytest.raises(ProviderError) as caught:
        await collect(engine)
    assert caught.value.message == f"{WHERE} answered HTTP 418: <html>teapot</html>"


async def test_a_key_the_upstream_echoes_is_scrubbed_from_the_error(
    cohere: FakeCohere, engine: CohereEngine
) -> None:
    cohere.fail(400, {"message": "invalid request: header was Bearer co-test-key-0123456789abcdef"})
    with pytest.raises(InvalidRequest) as caught:
        await collect(engine)
    assert "0123456789abcdef" not in caught.value.message


async def test_a_refused_connection_is_backend_unavailable(cohere: FakeCohere) -> None:
    url = cohere.url
    await cohere.stop()  # nothing listens there any more
    engine = CohereEngine(ProviderEndpoint("cohere", url, models=("command-a-03-2025",)))
    await engine.start()
    try:
        with pytest.raises(BackendUnavailable) as caught:
            await collect(engine)
    finally:
        await engine.close()
    assert caught.value.message.startswith(f"{WHERE} at {url} is unreachable: ")


# ---- the stream -------------------------------------------------------------------


async def test_a_stream_that_ends_without_message_end_is_truncated(
    cohere: FakeCohere, engine: CohereEngine
) -> None:
    cohere.answer(stream_events(["Hello", " there"]))
    cohere.cut_after(4)  # message-start, content-start, two deltas: no content-end, no message-end
    pieces: list[Piece] = []
    with pytest.raises(StreamTruncated) as caught:
        await collect(engine, pieces=pieces)
    assert "".join(p.text for p in pieces) == "Hello there"  # what came still reached the caller
    assert caught.value.message == (
        f"{WHERE} ended the stream for '{MODEL}' after 2 piece(s) without its message-end: "
        "the answer is truncated"
    )


async def test_done_before_message_end_is_truncated(
    cohere: FakeCohere, engine: CohereEngine
) -> None:
    cohere.answer([message_start(), content_start(), content_delta("Hel"), "[DONE]"])
    with pytest.raises(StreamTruncated):
        await collect(engine)


async def test_a_connection_dropped_mid_stream_is_truncated(
    cohere: FakeCohere, engine: CohereEngine
) -> None:
    cohere.answer(stream_events(["Hello", " there"]))
    cohere.drop_after(3)
    pieces: list[Piece] = []
    with pytest.raises(StreamTruncated) as caught:
        await collect(engine, pieces=pieces)
    assert "the answer is truncated" in caught.value.message
    assert all(p.finish_reason == 0 for p in pieces)  # never passed off as finished


async def test_finish_reason_error_is_backend_unavailable_with_cohere_s_message(
    cohere: FakeCohere, engine: CohereEngine
) -> None:
    cohere.answer(stream_events(["Hal"], message_end("ERROR", error="inference failed")))
    pieces: list[Piece] = []
    with pytest.raises(BackendUnavailable) as caught:
        await collect(engine, pieces=pieces)
    assert caught.value.message == (
        f"{WHERE} failed generating for '{MODEL}' (finish_reason ERROR): inference failed"
    )
    assert all(p.finish_reason == 0 for p in pieces)


async def test_finish_reason_timeout_is_a_truncated_answer(
    cohere: FakeCohere, engine: CohereEngine
) -> None:
    cohere.answer(stream_events(["Hal"], message_end("TIMEOUT")))
    with pytest.raises(StreamTruncated) as caught:
        await collect(engine)
    assert "(finish_reason TIMEOUT)" in caught.value.message


@pytest.mark.parametrize(
    ("event", "problem"),
    [
        ("not json", "not JSON"),
        ({"delta": {}}, "no event type"),
        ({"type": "content-delta", "delta": {}}, "content-delta without delta.message.content"),
        (
            {"type": "content-delta", "delta": {"message": {"content": {"text": 7}}}},
            "delta.message.content.text is 7, not a string",
        ),
        (
            {
                "type": "message-end",
                "delta": {"finish_reason": "COMPLETE", "usage": {"tokens": {"input_tokens": -1}}},
            },
            "usage.tokens.input_tokens is -1, not a count",
        ),
        ({"type": "message-end", "delta": {"finish_reason": "DONE"}}, "finish_reason 'DONE'"),
    ],
)
async def test_a_malformed_event_is_a_protocol_error_naming_it(
    cohere: FakeCohere, engine: CohereEngine, event: dict[str, object] | str, problem: str
) -> None:
    cohere.answer([message_start(), event])
    with pytest.raises(ProviderProtocolError) as caught:
        await collect(engine)
    assert f"sent a malformed event for '{MODEL}' ({problem})" in caught.value.message
