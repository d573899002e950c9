"""Reading the Messages API's streamed events: text, usage, stop reasons, cut and bad streams."""

from __future__ import annotations

import pytest
from backends.anthropic.anthropic_calls import collect
from support.fake_anthropic import FakeAnthropic, error_event, message_events, text_delta

from modelyard.backends.anthropic.engine import AnthropicEngine
from modelyard_client.errors import (
    BackendUnavailable,
    ContentRejected,
    ProviderError,
    ProviderProtocolError,
    RateLimited,
    StreamTruncated,
)
from modelyard_client.v1 import common_pb2


async def test_text_streams_and_the_last_piece_carries_finish_and_usage(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    fake.reply("Hel", "lo", "!", input_tokens=21, output_tokens=4)
    pieces = await collect(engine)
    assert "".join(p.text for p in pieces) == "Hello!"
    last = pieces[-1]
    assert (last.finish_reason, last.input_tokens, last.output_tokens) == (
        common_pb2.FINISH_REASON_STOP,
        21,
        4,
    )
    assert all(p.finish_reason == common_pb2.FINISH_REASON_UNSPECIFIED for p in pieces[:-1])


async def test_cached_prompt_tokens_count_as_input(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    fake.reply("ok", input_tokens=5, cache_creation=100, cache_read=2000)
    pieces = await collect(engine)
    assert pieces[-1].input_tokens == 2105


async def test_message_delta_usage_replaces_message_start_usage(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    events = message_events(["a"], input_tokens=7)
    delta = events[-2]
    assert not isinstance(delta, str) and delta[0] == "message_delta"
    delta[1]["usage"] = {"input_tokens": 9, "output_tokens": 30}
    fake.stream(events)
    last = (await collect(engine))[-1]
    assert (last.input_tokens, last.output_tokens) == (9, 30)


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", common_pb2.FINISH_REASON_STOP),
        ("stop_sequence", common_pb2.FINISH_REASON_STOP),
        ("max_tokens", common_pb2.FINISH_REASON_LENGTH),
        ("model_context_window_exceeded", common_pb2.FINISH_REASON_LENGTH),
        # tool_use → TOOL_CALLS, with its calls: test_anthropic_tools.py
        ("refusal", common_pb2.FINISH_REASON_CONTENT_FILTER),
    ],
)
async def test_stop_reasons_map_to_finish_reasons(
    fake: FakeAnthropic,
    engine: AnthropicEngine,
    stop_reason: str,
    finish: common_pb2.FinishReason.ValueType,
) -> None:
    fake.reply("x", stop_reason=stop_reason)
    assert (await collect(engine))[-1].finish_reason == finish


async def test_pings_other_blocks_and_unknown_events_carry_no_text(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    events = message_events(["visible"])
    events[3:3] = [
        ("ping", {"type": "ping"}),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "thinking_delta", "thinking": "hmm"},
            },
        ),
        ("brand_new_event", {"type": "brand_new_event", "anything": [1, 2]}),
        ": a comment line\n\n",
    ]
    fake.stream(events)
    assert "".join(p.text for p in await collect(engine)) == "visible"


async def test_a_stream_without_message_stop_is_truncated_and_keeps_its_text(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    fake.stream(message_events(["part one", " two"])[:-1])  # everything but message_stop
    pieces = []
    with pytest.raises(StreamTruncated, match="without message_stop"):
        async for piece in engine.infer_stream(
            "claude/claude-haiku-4-5",
            common_pb2.Input(text="hi"),
            common_pb2.GenerationParams(max_tokens=8),
        ):
            pieces.append(piece)
    assert "".join(p.text for p in pieces) == "part one two"


async def test_a_connection_cut_mid_event_is_truncated(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    fake.stream(message_events(["so far"])[:4], cut=True)
    pieces = []
    with pytest.raises(StreamTruncated, match="broke off the stream"):
        async for piece in engine.infer_stream(
            "claude/claude-haiku-4-5",
            common_pb2.Input(text="hi"),
            common_pb2.GenerationParams(max_tokens=8),
        ):
            pieces.append(piece)
    assert "".join(p.text for p in pieces) == "so far"
    assert all(p.finish_reason == common_pb2.FINISH_REASON_UNSPECIFIED for p in pieces)


async def test_an_overloaded_error_event_is_backend_unavailable(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    fake.stream([*message_events(["started"])[:4], error_event("overloaded_error", "Overloaded")])
    with pytest.raises(
        BackendUnavailable, match=r"failed mid-stream \(overloaded_error\): Overloaded"
    ):
        await collect(engine)


async def test_a_rate_limit_error_event_waits_the_default_second(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    fake.stream([error_event("rate_limit_error", "Number of request tokens has exceeded")])
    with pytest.raises(RateLimited) as caught:
        await collect(engine)
    assert caught.value.retry_after_s == 1.0


async def test_a_content_filter_error_event_is_content_rejected(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    fake.stream(
        [
            *message_events(["Sure"])[:4],
            error_event("invalid_request_error", "Output blocked by content filtering policy"),
        ]
    )
    with pytest.raises(ContentRejected) as caught:
        await collect(engine)
    assert caught.value.provider_code == "invalid_request_error"


async def test_text_after_message_stop_is_not_read(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    fake.stream([*message_events(["done"]), text_delta("never")])
    assert "".join(p.text for p in await collect(engine)) == "done"


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ("data: {not json\n\n", "not JSON"),
        ("data: [1, 2]\n\n", "a JSON list, not an object"),
        ('data: {"no": "type"}\n\n', "no event type"),
        (
            'data: {"type": "content_block_delta", "delta": {"type": "text_delta", "text": 5}}\n\n',
            "content_block_delta.delta.text is 5, not a string",
        ),
        (
            'data: {"type": "message_delta", "delta": {}, "usage": {"output_tokens": -1}}\n\n',
            "message_delta usage.output_tokens is -1, not a count",
        ),
        (
            'data: {"type": "message_start", "message": "x"}\n\n',
            "message_start.message is not an object",
        ),
    ],
)
async def test_a_malformed_event_is_a_protocol_error_naming_it(
    fake: FakeAnthropic, engine: AnthropicEngine, data: str, problem: str
) -> None:
    fake.stream([*message_events(["ok"])[:4], data])
    with pytest.raises(ProviderProtocolError) as caught:
        await collect(engine)
    assert f"({problem})" in caught.value.message


async def test_an_unknown_error_event_is_a_provider_error_naming_its_type(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    fake.stream([error_event("brand_new_error", "Something new")])
    with pytest.raises(ProviderError) as caught:
        await collect(engine)
    assert type(caught.value) is ProviderError
    assert caught.value.message == (
        "upstream 'claude' failed mid-stream (brand_new_error): Something new"
    )
