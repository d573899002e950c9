"""What the openai_compat backend sends upstream and what it reports back, through the gateway.

A fake OpenAI-compatible upstream (see conftest) records each request and
plays back a stream in OpenAI's documented format.
"""

from __future__ import annotations

import pytest
from backends.openai_compat.openai_fake import (
    MODEL,
    Clients,
    FakeUpstream,
    StackFor,
    chunk,
    request,
    usage_chunk,
)

from modelyard_client.v1 import common_pb2, gateway_pb2, registry_pb2


async def _stream(
    clients: Clients, req: gateway_pb2.GenerateRequest
) -> list[gateway_pb2.GenerateChunk]:
    return [c async for c in clients.gateway.GenerateStream(req, timeout=10)]


async def test_upstream_models_are_registered_under_the_custom_provider(
    upstream: FakeUpstream, stack_for: StackFor
) -> None:
    upstream.models = ["fake-model", "other-model"]
    clients = await stack_for(upstream.url)
    listed = await clients.registry.ListModels(registry_pb2.ListModelsRequest(provider="custom"))
    by_id = {m.id: m for m in listed.models}
    assert sorted(by_id) == ["custom/fake-model", "custom/other-model"]
    entry = by_id[MODEL]
    assert entry.name == "fake-model"  # the upstream's own name, sent back in requests
    assert entry.provider == "custom"
    assert [d.backend for d in entry.deployments] == ["openai_compat"]
    assert entry.deployments[0].endpoint == clients.stack.address
    assert entry.metadata["base_url"] == f"{upstream.url}/v1"


async def test_text_input_is_sent_as_one_user_message_with_the_params(
    upstream: FakeUpstream, stack_for: StackFor
) -> None:
    upstream.stream([chunk("ok", role="assistant"), chunk(finish_reason="stop")])
    clients = await stack_for(upstream.url)
    req = request("Name three rivers.", max_tokens=42)
    req.params.temperature = 0.5  # exact in float32, so it compares exactly
    req.params.top_p = 0.25
    req.params.seed = 1234
    req.params.stop.extend(["\n\n", "END"])
    await _stream(clients, req)

    assert len(upstream.bodies) == 1
    body = upstream.bodies[0]
    assert body["model"] == "fake-model"  # the upstream name, not the catalog id
    assert body["messages"] == [{"role": "user", "content": "Name three rivers."}]
    assert body["max_tokens"] == 42
    assert body["temperature"] == 0.5
    assert body["top_p"] == 0.25
    assert body["seed"] == 1234
    assert body["stop"] == ["\n\n", "END"]
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


async def test_chat_input_keeps_roles_order_and_names_and_unset_params_stay_unsent(
    upstream: FakeUpstream, stack_for: StackFor
) -> None:
    upstream.stream([chunk("ok"), chunk(finish_reason="stop")])
    clients = await stack_for(upstream.url)
    req = gateway_pb2.GenerateRequest(model=MODEL)
    req.input.chat.messages.add(role="system", content="Be terse.")
    req.input.chat.messages.add(role="user", content="Hi", name="ada")
    req.input.chat.messages.add(role="assistant", content="Hello.")
    req.input.chat.messages.add(role="user", content="Bye")
    await _stream(clients, req)

    body = upstream.bodies[0]
    assert body["messages"] == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Hi", "name": "ada"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Bye"},
    ]
    # max_tokens 0 means "the gateway's default", which is always sent.
    assert body["max_tokens"] == 256
    for unset in ("temperature", "top_p", "seed", "stop"):
        assert unset not in body


async def test_api_key_is_sent_as_a_bearer_token(
    upstream: FakeUpstream, stack_for: StackFor
) -> None:
    upstream.stream([chunk("ok"), chunk(finish_reason="stop")])
    clients = await stack_for(upstream.url, CUSTOM_AI_API_KEY="sk-test-123")
    await _stream(clients, request())
    assert upstream.headers[0]["Authorization"] == "Bearer sk-test-123"


async def test_stream_pieces_finish_reason_and_usage_reach_the_caller(
    upstream: FakeUpstream, stack_for: StackFor
) -> None:
    upstream.stream(
        [
            chunk("", role="assistant"),  # OpenAI opens with an empty role delta
            chunk("Hello"),
            chunk(", "),
            chunk("world"),
            chunk(finish_reason="length"),
            usage_chunk(prompt_tokens=11, completion_tokens=3),
        ]
    )
    clients = await stack_for(upstream.url)
    chunks = await _stream(clients, request())

    # Events that arrive together travel as one piece; the finish rides on the last.
    assert "".join(c.text for c in chunks) == "Hello, world"
    assert chunks[0].model_id == MODEL
    last = chunks[-1]
    assert last.finish_reason == common_pb2.FINISH_REASON_LENGTH
    assert (last.usage.input_tokens, last.usage.output_tokens) == (11, 3)
    assert all(c.finish_reason == common_pb2.FINISH_REASON_UNSPECIFIED for c in chunks[:-1])


async def test_generate_reports_usage_from_the_usage_chunk(
    upstream: FakeUpstream, stack_for: StackFor
) -> None:
    upstream.stream(
        [
            chunk("Hi", role="assistant"),
            chunk(" there"),
            chunk(finish_reason="stop"),
            usage_chunk(prompt_tokens=9, completion_tokens=2),
        ]
    )
    clients = await stack_for(upstream.url)
    response = await clients.gateway.Generate(request(), timeout=10)
    assert response.text == "Hi there"
    assert response.model_id == MODEL
    assert response.finish_reason == common_pb2.FINISH_REASON_STOP
    assert (response.usage.input_tokens, response.usage.output_tokens) == (9, 2)


@pytest.mark.parametrize(
    ("upstream_reason", "expected"),
    [
        ("stop", common_pb2.FINISH_REASON_STOP),
        ("length", common_pb2.FINISH_REASON_LENGTH),
        ("content_filter", common_pb2.FINISH_REASON_CONTENT_FILTER),
        ("tool_calls", common_pb2.FINISH_REASON_TOOL_CALLS),
    ],
)
async def test_finish_reasons_map_to_the_proto_enum(
    upstream: FakeUpstream, stack_for: StackFor, upstream_reason: str, expected: int
) -> None:
    upstream.stream([chunk("x"), chunk(finish_reason=upstream_reason)])
    clients = await stack_for(upstream.url)
    chunks = await _stream(clients, request())
    assert chunks[-1].finish_reason == expected
