"""What the cohere engine sends to Chat v2, and how it reads the stream back."""

from __future__ import annotations

import json

import pytest
from backends.cohere.calls import KEY, MODEL, collect, text_input
from support.fake_cohere import (
    FakeCohere,
    content_delta,
    message_end,
    message_start,
    stream_events,
)

from modelyard.backends.cohere.engine import CohereEngine
from modelyard.backends.openai_compat.providers import ProviderEndpoint
from modelyard_client.v1 import common_pb2


async def test_text_input_and_every_param_go_out_in_cohere_names(
    cohere: FakeCohere, engine: CohereEngine
) -> None:
    params = common_pb2.GenerationParams(
        max_tokens=42, temperature=0.5, top_p=0.25, top_k=40, seed=1234
    )
    params.stop.extend(["\n\n", "END"])
    await collect(engine, text_input("Name three rivers."), params)

    assert cohere.bodies == [
        {
            "model": "command-a-03-2025",  # Cohere's name, not the catalog id
            "messages": [{"role": "user", "content": "Name three rivers."}],
            "stream": True,
            "max_tokens": 42,
            "temperature": 0.5,  # all exact in float32, so they compare exactly
            "p": 0.25,
            "k": 40,
            "stop_sequences": ["\n\n", "END"],
            "seed": 1234,
        }
    ]


async def test_chat_keeps_roles_and_order_and_unset_params_stay_unsent(
    cohere: FakeCohere, engine: CohereEngine
) -> None:
    chat = common_pb2.Input()
    chat.chat.messages.add(role="system", content="Be terse.")
    chat.chat.messages.add(role="user", content="Hi")
    chat.chat.messages.add(role="assistant", content="Hello.")
    chat.chat.messages.add(role="user", content="Bye")
    await collect(engine, chat, common_pb2.GenerationParams())

    assert cohere.bodies == [
        {
            "model": "command-a-03-2025",
            "messages": [
                {"role": "system", "content": "Be terse."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello."},
                {"role": "user", "content": "Bye"},
            ],
            "stream": True,
        }
    ]


async def test_a_response_schema_becomes_a_json_object_response_format(
    cohere: FakeCohere, engine: CohereEngine
) -> None:
    schema = {"type": "object", "properties": {"river": {"type": "string"}}}
    await collect(
        engine, params=common_pb2.GenerationParams(response_schema_json=json.dumps(schema))
    )
    assert cohere.bodies[0]["response_format"] == {"type": "json_object", "json_schema": schema}


async def test_the_key_goes_as_a_bearer_token_read_on_every_call(cohere: FakeCohere) -> None:
    keys = iter(["co-first", "co-second"])
    cohere.api_keys = {"co-first", "co-second"}
    engine = CohereEngine(
        ProviderEndpoint(
            "cohere",
            cohere.url,
            api_key="co-at-start",
            models=("command-a-03-2025",),
            current_key=lambda: next(keys),
        )
    )
    await engine.start()
    try:
        await collect(engine)
        await collect(engine)
    finally:
        await engine.close()
    assert [h["Authorization"] for h in cohere.headers] == ["Bearer co-first", "Bearer co-second"]
    assert cohere.headers[0]["Content-Type"] == "application/json"


async def test_text_streams_in_pieces_and_the_last_carries_finish_and_billed_units(
    cohere: FakeCohere, engine: CohereEngine
) -> None:
    cohere.answer(
        stream_events(
            ["Hello", ", ", "world"],
            message_end("MAX_TOKENS", billed=(11, 3), tokens=(80, 4)),
        )
    )
    pieces = await collect(engine)

    assert "".join(p.text for p in pieces) == "Hello, world"
    last = pieces[-1]
    assert last.finish_reason == common_pb2.FINISH_REASON_LENGTH
    # Billed units, which the catalog's prices apply to; not `tokens`.
    assert (last.input_tokens, last.output_tokens) == (11, 3)
    assert all(p.finish_reason == common_pb2.FINISH_REASON_UNSPECIFIED for p in pieces[:-1])


async def test_without_billed_units_the_token_counts_are_reported(
    cohere: FakeCohere, engine: CohereEngine
) -> None:
    cohere.answer(stream_events(["ok"], message_end(billed=None, tokens=(70, 1))))
    last = (await collect(engine))[-1]
    assert (last.input_tokens, last.output_tokens) == (70, 1)


async def test_without_usage_the_text_events_are_counted_as_output(
    cohere: FakeCohere, engine: CohereEngine
) -> None:
    cohere.answer(stream_events(["a", "b", "c"], message_end(billed=None, tokens=None)))
    last = (await collect(engine))[-1]
    assert (last.input_tokens, last.output_tokens) == (0, 3)


async def test_events_without_answer_text_are_passed_over(
    cohere: FakeCohere, engine: CohereEngine
) -> None:
    thinking = {
        "type": "content-delta",
        "index": 0,
        "delta": {"message": {"content": {"thinking": "Let me see."}}},
    }
    citation = {"type": "citation-start", "index": 0, "delta": {"message": {"citations": {}}}}
    cohere.answer([message_start(), thinking, content_delta("Yes."), citation, message_end()])
    pieces = await collect(engine)
    assert "".join(p.text for p in pieces) == "Yes."
    assert pieces[-1].finish_reason == common_pb2.FINISH_REASON_STOP


async def test_a_done_line_after_message_end_changes_nothing(
    cohere: FakeCohere, engine: CohereEngine
) -> None:
    cohere.answer([*stream_events(["ok"]), "[DONE]"])
    last = (await collect(engine))[-1]
    assert last.finish_reason == common_pb2.FINISH_REASON_STOP


@pytest.mark.parametrize(
    ("cohere_reason", "expected"),
    [
        ("COMPLETE", common_pb2.FINISH_REASON_STOP),
        ("STOP_SEQUENCE", common_pb2.FINISH_REASON_STOP),
        ("MAX_TOKENS", common_pb2.FINISH_REASON_LENGTH),
        # TOOL_CALL → TOOL_CALLS, with its calls: test_cohere_tools.py
        ("CONTENT_BLOCKED", common_pb2.FINISH_REASON_CONTENT_FILTER),
    ],
)
async def test_finish_reasons_map_to_the_proto_enum(
    cohere: FakeCohere, engine: CohereEngine, cohere_reason: str, expected: int
) -> None:
    cohere.answer(stream_events(["x"], message_end(cohere_reason)))
    assert (await collect(engine))[-1].finish_reason == expected


async def test_models_come_from_the_catalog_when_none_are_listed(cohere: FakeCohere) -> None:
    engine = CohereEngine(ProviderEndpoint("co", cohere.url, api_key=KEY))
    await engine.start()
    try:
        served = [m.id for m in engine.models()]
    finally:
        await engine.close()
    # The catalog's chat models, and its Embed model (which makes embeddings, no chat).
    assert served == [
        "co/command-a-03-2025",
        "co/command-r-08-2024",
        "co/command-r7b-12-2024",
        "co/embed-v4.0",
    ]
    assert engine.health().status == common_pb2.HEALTH_STATUS_HEALTHY


async def test_the_model_entry_names_cohere_s_model_and_what_it_does(engine: CohereEngine) -> None:
    [entry] = engine.models()
    assert (entry.id, entry.name, entry.provider) == (MODEL, "command-a-03-2025", "cohere")
    assert list(entry.capabilities) == [
        common_pb2.CAPABILITY_CHAT,
        common_pb2.CAPABILITY_TEXT_GENERATION,
        common_pb2.CAPABILITY_STREAMING,
        common_pb2.CAPABILITY_TOOLS,
    ]
    assert engine.serves(MODEL) and not engine.serves("cohere/other")
