"""Image parts on the OpenAI wire, sent through the backend service: the content array as
the reference has it, an https URL passed on as it is, text parts beside tool calls kept
as the message's content, and the usage's image count."""

from __future__ import annotations

from backends.openai_compat.openai_fake import (
    MODEL,
    Clients,
    FakeUpstream,
    StackFor,
    chunk,
    usage_chunk,
)
from support.chat_images import PNG_B64, image_chat

from modelyard_client.v1 import backend_pb2, common_pb2

HTTPS = "https://example.com/cat.jpg"


async def _infer(clients: Clients, model_input: common_pb2.Input) -> list[backend_pb2.InferChunk]:
    request = backend_pb2.InferRequest(model_id=MODEL, input=model_input)
    request.params.max_tokens = 16
    return [c async for c in clients.backend.InferStream(request, timeout=10)]


async def test_bytes_go_as_a_data_url_and_an_https_url_as_it_is(
    upstream: FakeUpstream, stack_for: StackFor
) -> None:
    upstream.stream(
        [chunk("Two cats.", role="assistant"), chunk(finish_reason="stop"), usage_chunk(1700, 3)]
    )
    clients = await stack_for(upstream.url)
    model_input = image_chat("Compare them.")
    model_input.chat.messages[0].parts.add(image=common_pb2.Image(url=HTTPS))
    chunks = await _infer(clients, model_input)
    [body] = upstream.bodies
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "Compare them."},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
        {"type": "image_url", "image_url": {"url": HTTPS}},
    ]
    assert chunks[-1].usage.images == 2
    assert chunks[-1].usage.input_tokens == 1700


async def test_an_assistant_turn_of_text_parts_keeps_them_beside_its_tool_calls(
    upstream: FakeUpstream, stack_for: StackFor
) -> None:
    upstream.stream([chunk("ok"), chunk(finish_reason="stop")])
    clients = await stack_for(upstream.url)
    model_input = image_chat()
    assistant = model_input.chat.messages.add(role="assistant")
    assistant.parts.add(text="Let me look it up.")
    assistant.tool_calls.add(id="call_1", name="lookup", arguments_json='{"q": "cat"}')
    model_input.chat.messages.add(role="tool", tool_call_id="call_1", content="a cat")
    chunks = await _infer(clients, model_input)
    sent = upstream.bodies[0]["messages"][1]
    assert sent["content"] == [{"type": "text", "text": "Let me look it up."}]
    assert sent["tool_calls"][0]["function"] == {"name": "lookup", "arguments": '{"q": "cat"}'}
    assert chunks[-1].usage.images == 1
