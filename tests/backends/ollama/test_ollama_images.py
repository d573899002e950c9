"""Image parts on Ollama's /api/chat: the message's ``images`` (base64) beside its text,
the usage's image count, and an image URL refused before any call."""

from __future__ import annotations

import pytest
from backends.ollama.calls import collect
from support.chat_images import PNG_B64, image_chat
from support.fake_ollama import FakeOllama

from modelyard.backends.ollama.engine import OllamaEngine
from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import common_pb2

LLAVA = "ollama/llava:7b"  # the fake's vision model


async def test_image_parts_go_in_the_message_images_and_text_parts_in_its_content(
    daemon: FakeOllama, engine: OllamaEngine
) -> None:
    model_input = image_chat("Describe it.")
    model_input.chat.messages[0].parts.add(text=" Briefly.")
    pieces = await collect(engine, model_input, model_id=LLAVA)
    [body] = daemon.chats()
    assert body["model"] == "llava:7b"
    assert body["messages"] == [
        {"role": "user", "content": "Describe it. Briefly.", "images": [PNG_B64]}
    ]
    assert pieces[-1].images == 1


async def test_an_image_url_is_refused_naming_the_field_before_any_call(
    daemon: FakeOllama, engine: OllamaEngine
) -> None:
    model_input = image_chat(image=common_pb2.Image(url="https://example.com/cat.png"))
    with pytest.raises(InvalidRequest) as refused:
        await collect(engine, model_input, model_id=LLAVA)
    assert refused.value.field == "input.chat.messages[0].parts[1].image.url"
    assert refused.value.message.startswith(
        "input.chat.messages[0].parts[1].image.url: the Ollama backend 'ollama' takes an "
        "image's bytes, not a URL"
    )
    assert daemon.chats() == []
