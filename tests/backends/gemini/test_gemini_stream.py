"""How the gemini engine reads ``streamGenerateContent``: text and usage out, and every way a
stream can end that is not a finished answer."""

from __future__ import annotations

import pytest
from backends.gemini.gemini_engines import collect
from support.fake_gemini import FakeGemini, google_error, response, retry_info

from modelyard.backends.gemini import GeminiEngine
from modelyard_client.errors import (
    BackendUnavailable,
    ContentRejected,
    ProviderError,
    ProviderProtocolError,
    ProviderRefusal,
    RateLimited,
    StreamTruncated,
)
from modelyard_client.v1 import common_pb2

HIGH_HARASSMENT = {
    "category": "HARM_CATEGORY_HARASSMENT",
    "probability": "HIGH",
    "blocked": True,
}
LOW_HATE = {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE"}


async def test_text_the_finish_reason_and_the_last_usage_reach_the_caller(
    fake: FakeGemini, studio: GeminiEngine
) -> None:
    fake.stream(
        [
            response("Hello", usage=(11, 1)),
            response(", ", usage=(11, 2)),
            response("world", finish="STOP", usage=(11, 3)),
        ]
    )
    pieces = await collect(studio)

    assert "".join(p.text for p in pieces) == "Hello, world"
    last = pieces[-1]
    assert last.finish_reason == common_pb2.FINISH_REASON_STOP
    assert (last.input_tokens, last.output_tokens) == (11, 3)
    assert all(p.finish_reason == common_pb2.FINISH_REASON_UNSPECIFIED for p in pieces[:-1])


async def test_thinking_tokens_count_as_output_and_thought_parts_are_not_the_answer(
    fake: FakeGemini, studio: GeminiEngine
) -> None:
    thought = {
        "candidates": [
            {"content": {"parts": [{"text": "Let me think.", "thought": True}], "role": "model"}}
        ]
    }
    fake.stream([thought, response("42", finish="STOP", usage=(7, 1), thoughts=30)])
    pieces = await collect(studio)
    assert "".join(p.text for p in pieces) == "42"
    assert (pieces[-1].input_tokens, pieces[-1].output_tokens) == (7, 31)


async def test_max_tokens_is_a_length_finish(fake: FakeGemini, studio: GeminiEngine) -> None:
    fake.stream([response("Once upon", finish="MAX_TOKENS", usage=(4, 2))])
    pieces = await collect(studio)
    assert pieces[-1].finish_reason == common_pb2.FINISH_REASON_LENGTH


async def test_usage_in_an_event_after_the_finish_is_still_counted(
    fake: FakeGemini, studio: GeminiEngine
) -> None:
    fake.stream(
        [
            response("Hi", finish="STOP"),
            {
                "usageMetadata": {
                    "promptTokenCount": 5,
                    "candidatesTokenCount": 1,
                    "totalTokenCount": 6,
                }
            },
        ]
    )
    pieces = await collect(studio)
    assert (pieces[-1].input_tokens, pieces[-1].output_tokens) == (5, 1)


async def test_a_safety_finish_is_content_rejected_naming_the_blocked_category(
    fake: FakeGemini, studio: GeminiEngine
) -> None:
    fake.stream(
        [
            response("Well, ", usage=(9, 2)),
            response(finish="SAFETY", usage=(9, 2), safety=[LOW_HATE, HIGH_HARASSMENT]),
        ]
    )
    seen = []
    with pytest.raises(ContentRejected) as caught:
        async for piece in studio.infer_stream(
            "gemini/gemini-2.5-flash", common_pb2.Input(text="x"), common_pb2.GenerationParams()
        ):
            seen.append(piece.text)
    assert seen == ["Well, "]  # what came before the block still reached the caller
    assert caught.value.provider_code == "SAFETY"
    assert "finishReason SAFETY; blocked: HARM_CATEGORY_HARASSMENT)" in caught.value.message
    assert "HATE_SPEECH" not in caught.value.message


@pytest.mark.parametrize("reason", ["RECITATION", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII"])
async def test_other_policy_finishes_are_content_rejected(
    fake: FakeGemini, studio: GeminiEngine, reason: str
) -> None:
    fake.stream([response("The lyrics go", finish=reason, usage=(3, 3))])
    with pytest.raises(ContentRejected) as caught:
        await collect(studio)
    assert caught.value.provider_code == reason


async def test_a_blocked_prompt_is_content_rejected_naming_the_block_reason(
    fake: FakeGemini, studio: GeminiEngine
) -> None:
    fake.stream(
        [
            {
                "promptFeedback": {"blockReason": "PROHIBITED_CONTENT", "safetyRatings": []},
                "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8},
                "modelVersion": "gemini-2.5-flash",
            }
        ]
    )
    with pytest.raises(ContentRejected) as caught:
        await collect(studio)
    assert caught.value.provider_code == "PROHIBITED_CONTENT"
    assert "blocked the prompt" in caught.value.message
    assert "promptFeedback.blockReason PROHIBITED_CONTENT" in caught.value.message


async def test_a_language_finish_is_a_refusal(fake: FakeGemini, studio: GeminiEngine) -> None:
    fake.stream([response(finish="LANGUAGE", usage=(3, 0))])
    with pytest.raises(ProviderRefusal) as caught:
        await collect(studio)
    assert type(caught.value) is ProviderRefusal
    assert caught.value.provider_code == "LANGUAGE"


async def test_an_unknown_finish_is_not_passed_off_as_a_finished_answer(
    fake: FakeGemini, studio: GeminiEngine
) -> None:
    fake.stream([response("Part of it", finish="OTHER", usage=(3, 3))])
    with pytest.raises(ProviderError) as caught:
        await collect(studio)
    assert "finishReason OTHER: the answer may be incomplete" in caught.value.message


async def test_a_stream_that_ends_without_a_finish_reason_is_truncated(
    fake: FakeGemini, studio: GeminiEngine
) -> None:
    fake.stream([response("Hello", usage=(4, 1)), response(" wor", usage=(4, 2))])
    with pytest.raises(StreamTruncated) as caught:
        await collect(studio)
    assert "after 2 event(s) without a finishReason" in caught.value.message


async def test_a_connection_dropped_mid_event_is_truncated(
    fake: FakeGemini, studio: GeminiEngine
) -> None:
    fake.stream_then_drop([response("Hello", usage=(4, 1))], tail=b'data: {"candida')
    seen = []
    with pytest.raises(StreamTruncated):
        async for piece in studio.infer_stream(
            "gemini/gemini-2.5-flash", common_pb2.Input(text="x"), common_pb2.GenerationParams()
        ):
            seen.append(piece.text)
    assert seen == ["Hello"]


async def test_an_error_event_mid_stream_is_the_error_it_names(
    fake: FakeGemini, studio: GeminiEngine
) -> None:
    fake.stream(
        [
            response("Hel", usage=(4, 1)),
            google_error(503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
        ]
    )
    with pytest.raises(BackendUnavailable) as caught:
        await collect(studio)
    assert "UNAVAILABLE: The model is overloaded" in caught.value.message


async def test_a_rate_limit_event_mid_stream_keeps_its_retry_delay(
    fake: FakeGemini, studio: GeminiEngine
) -> None:
    fake.stream([google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", [retry_info("7s")])])
    with pytest.raises(RateLimited) as caught:
        await collect(studio)
    assert caught.value.retry_after_s == 7.0


@pytest.mark.parametrize(
    ("event", "problem"),
    [
        ("not json at all", "not JSON"),
        ("[1, 2]", "a JSON list, not an object"),
        ('{"candidates": {"0": 1}}', "candidates is not a list"),
        ('{"candidates": [{"content": {"parts": [{"text": 5}]}}]}', "parts[0].text is 5"),
        ('{"usageMetadata": {"promptTokenCount": -1}}', "promptTokenCount is -1, not a count"),
    ],
)
async def test_an_event_the_format_does_not_allow_is_a_protocol_error(
    fake: FakeGemini, studio: GeminiEngine, event: str, problem: str
) -> None:
    fake.stream([event])
    with pytest.raises(ProviderProtocolError) as caught:
        await collect(studio)
    assert problem in caught.value.message
