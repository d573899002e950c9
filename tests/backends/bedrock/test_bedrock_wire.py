"""What the bedrock engine sends to ConverseStream, and what it makes of the answer."""

from __future__ import annotations

import json

import pytest
from backends.bedrock.calls import CLAUDE, CLAUDE_ID, NOVA, NOVA_ID, collect, text
from support.fake_bedrock import (
    ACCESS_KEY_ID,
    REGION,
    FakeBedrock,
    delta,
    event,
    message_start,
    message_stop,
    metadata,
    text_stream,
)

from modelyard.backends.bedrock.engine import BedrockEngine, default_endpoint
from modelyard.config import BedrockBackend
from modelyard_client.v1 import common_pb2


async def test_text_input_becomes_one_user_message_with_the_inference_config(
    engine: BedrockEngine, bedrock: FakeBedrock
) -> None:
    params = common_pb2.GenerationParams(max_tokens=42, temperature=0.5, top_p=0.25)
    params.stop.extend(["\n\n", "END"])
    await collect(engine, text("Name three rivers."), params)

    [received] = bedrock.requests
    assert received.model_id == NOVA
    assert received.body == {
        "messages": [{"role": "user", "content": [{"text": "Name three rivers."}]}],
        "inferenceConfig": {
            "maxTokens": 42,
            "temperature": 0.5,
            "topP": 0.25,
            "stopSequences": ["\n\n", "END"],
        },
    }


async def test_the_model_id_is_percent_encoded_in_the_path_as_signed(
    engine: BedrockEngine, bedrock: FakeBedrock
) -> None:
    await collect(engine)
    assert bedrock.requests[0].raw_path == "/model/amazon.nova-lite-v1%3A0/converse-stream"


async def test_each_request_is_signed_with_sigv4_for_bedrock_in_the_region(
    engine: BedrockEngine, bedrock: FakeBedrock
) -> None:
    await collect(engine)
    headers = bedrock.requests[0].headers
    scope = f"Credential={ACCESS_KEY_ID}/{headers['X-Amz-Date'][:8]}/{REGION}/bedrock/aws4_request"
    assert headers["Authorization"].startswith(f"AWS4-HMAC-SHA256 {scope}, ")
    assert "SignedHeaders=accept;content-type;host;x-amz-date, " in headers["Authorization"]
    assert headers["Accept"] == "application/vnd.amazon.eventstream"
    assert headers["Content-Type"] == "application/json"
    assert "X-Amz-Security-Token" not in headers  # long-term keys carry no session token
    assert bedrock.refused == []


async def test_a_session_token_is_sent_and_signed(
    bedrock: FakeBedrock, monkeypatch: pytest.MonkeyPatch
) -> None:
    bedrock.credentials[ACCESS_KEY_ID] = (bedrock.credentials[ACCESS_KEY_ID][0], "session-token-1")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token-1")
    engine = BedrockEngine("bedrock", BedrockBackend(region=REGION, endpoint=bedrock.url))
    await engine.start()
    try:
        pieces = await collect(engine)
    finally:
        await engine.close()
    headers = bedrock.requests[0].headers
    assert headers["X-Amz-Security-Token"] == "session-token-1"
    assert "x-amz-date;x-amz-security-token, " in headers["Authorization"]
    assert pieces[-1].finish_reason == common_pb2.FINISH_REASON_STOP


async def test_chat_roles_become_system_blocks_and_alternating_turns(
    engine: BedrockEngine, bedrock: FakeBedrock
) -> None:
    chat = common_pb2.Input()
    for role, content in [
        ("system", "Be terse."),
        ("user", "Hi"),
        ("user", "Still there?"),
        ("assistant", "Yes."),
        ("system", "Answer in French."),
        ("user", "Bye"),
    ]:
        chat.chat.messages.add(role=role, content=content)
    await collect(engine, chat, common_pb2.GenerationParams())

    body = bedrock.requests[0].body
    assert body["system"] == [{"text": "Be terse."}, {"text": "Answer in French."}]
    assert body["messages"] == [
        {"role": "user", "content": [{"text": "Hi"}, {"text": "Still there?"}]},
        {"role": "assistant", "content": [{"text": "Yes."}]},
        {"role": "user", "content": [{"text": "Bye"}]},
    ]
    # max_tokens 0: the model's default; nothing else set is sent.
    assert "inferenceConfig" not in body and "additionalModelRequestFields" not in body


async def test_a_prefill_to_continue_ends_the_messages_as_it_is(
    engine: BedrockEngine, bedrock: FakeBedrock
) -> None:
    chat = common_pb2.Input()
    chat.chat.messages.add(role="user", content="Count to five.")
    chat.chat.messages.add(role="assistant", content="One, two,")
    params = common_pb2.GenerationParams(max_tokens=8, continue_final_message=True)
    await collect(engine, chat, params, model_id=CLAUDE_ID)
    assert bedrock.requests[0].body["messages"][-1] == {
        "role": "assistant",
        "content": [{"text": "One, two,"}],
    }


@pytest.mark.parametrize(
    ("model_id", "fields"),
    [
        (CLAUDE_ID, {"top_k": 40}),
        (NOVA_ID, {"inferenceConfig": {"topK": 40}}),
    ],
)
async def test_top_k_goes_in_the_request_fields_the_model_family_documents(
    engine: BedrockEngine, bedrock: FakeBedrock, model_id: str, fields: dict[str, object]
) -> None:
    await collect(engine, params=common_pb2.GenerationParams(top_k=40), model_id=model_id)
    assert bedrock.requests[0].body["additionalModelRequestFields"] == fields


async def test_a_response_schema_is_sent_as_a_json_schema_output_format(
    engine: BedrockEngine, bedrock: FakeBedrock
) -> None:
    schema = json.dumps({"type": "object", "properties": {"city": {"type": "string"}}})
    await collect(engine, params=common_pb2.GenerationParams(response_schema_json=schema))
    assert bedrock.requests[0].body["outputConfig"] == {
        "textFormat": {"type": "json_schema", "structure": {"jsonSchema": {"schema": schema}}}
    }


async def test_deltas_read_together_travel_as_one_piece_and_the_last_carries_the_usage(
    engine: BedrockEngine, bedrock: FakeBedrock
) -> None:
    bedrock.answer(text_stream(["Hello", ", ", "world"], "max_tokens", 11, 3))
    pieces = await collect(engine)
    assert "".join(p.text for p in pieces) == "Hello, world"
    last = pieces[-1]
    assert last.finish_reason == common_pb2.FINISH_REASON_LENGTH
    assert (last.input_tokens, last.output_tokens) == (11, 3)
    assert all(p.finish_reason == common_pb2.FINISH_REASON_UNSPECIFIED for p in pieces[:-1])


@pytest.mark.parametrize(
    ("stop_reason", "expected"),
    [
        ("end_turn", common_pb2.FINISH_REASON_STOP),
        ("stop_sequence", common_pb2.FINISH_REASON_STOP),
        ("max_tokens", common_pb2.FINISH_REASON_LENGTH),
        ("model_context_window_exceeded", common_pb2.FINISH_REASON_LENGTH),
        ("tool_use", common_pb2.FINISH_REASON_TOOL_CALLS),
    ],
)
async def test_stop_reasons_map_to_the_proto_enum(
    engine: BedrockEngine, bedrock: FakeBedrock, stop_reason: str, expected: int
) -> None:
    bedrock.answer(text_stream(["x"], stop_reason))
    assert (await collect(engine))[-1].finish_reason == expected


async def test_events_without_text_and_unknown_events_are_passed_over(
    engine: BedrockEngine, bedrock: FakeBedrock
) -> None:
    bedrock.answer(
        [
            message_start(),
            event("contentBlockStart", {"contentBlockIndex": 0, "start": {}}),
            delta("ok"),
            event("someFutureEvent", {"anything": 1}),
            message_stop("end_turn"),
            metadata(5, 1),
        ]
    )
    pieces = await collect(engine)
    assert "".join(p.text for p in pieces) == "ok"
    assert (pieces[-1].input_tokens, pieces[-1].output_tokens) == (5, 1)


def test_the_default_endpoint_is_the_regional_runtime_endpoint() -> None:
    assert default_endpoint("eu-west-3") == "https://bedrock-runtime.eu-west-3.amazonaws.com"
    engine = BedrockEngine("bedrock", BedrockBackend(region="eu-west-3"))
    assert engine.endpoint == "https://bedrock-runtime.eu-west-3.amazonaws.com"


async def test_models_come_with_the_catalog_prices_and_only_served_capabilities(
    engine: BedrockEngine,
) -> None:
    by_id = {m.id: m for m in engine.models()}
    assert sorted(by_id) == sorted([NOVA_ID, CLAUDE_ID])
    claude = by_id[CLAUDE_ID]
    assert claude.name == CLAUDE and claude.provider == "bedrock"
    assert claude.cost.usd_per_input_token == pytest.approx(3.0 / 1e6)
    assert claude.cost.usd_per_output_token == pytest.approx(15.0 / 1e6)
    assert claude.context_window == 200000
    assert common_pb2.CAPABILITY_VISION in claude.capabilities  # image parts as ImageBlocks
    assert common_pb2.CAPABILITY_TOOLS in claude.capabilities  # toolConfig
    assert common_pb2.CAPABILITY_STREAMING in claude.capabilities
    assert list(claude.input_modalities) == [common_pb2.MODALITY_TEXT]
    assert claude.metadata["region"] == REGION


async def test_a_geographic_profile_has_its_own_price_or_its_models(bedrock: FakeBedrock) -> None:
    claude_us = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
    nova_eu = f"eu.{NOVA}"  # not listed: a Nova profile costs what the model does
    engine = BedrockEngine(
        "bedrock",
        BedrockBackend(
            region=REGION, endpoint=bedrock.url, models=(claude_us, nova_eu, "x.unlisted")
        ),
    )
    await engine.start()
    await engine.close()
    by_id = {m.id: m for m in engine.models()}
    assert by_id[f"bedrock/{claude_us}"].cost.usd_per_output_token == pytest.approx(16.5 / 1e6)
    assert by_id[f"bedrock/{nova_eu}"].cost.usd_per_output_token == pytest.approx(0.24 / 1e6)
    assert by_id["bedrock/x.unlisted"].cost.usd_per_output_token == 0  # not in the catalog


async def test_without_models_the_catalogs_bedrock_models_are_served(bedrock: FakeBedrock) -> None:
    engine = BedrockEngine("bedrock", BedrockBackend(region=REGION, endpoint=bedrock.url))
    await engine.start()
    await engine.close()
    assert [m.name for m in engine.models()] == sorted(
        [
            "amazon.nova-lite-v1:0",
            "amazon.nova-micro-v1:0",
            "amazon.nova-pro-v1:0",
            "eu.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        ]
    )
    assert engine.serves("bedrock/meta.llama3-70b-instruct-v1:0")  # any other id, by prefix
