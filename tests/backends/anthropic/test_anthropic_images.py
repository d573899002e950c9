"""Image parts on Anthropic's Messages API: image blocks in order with the text, the
usage's image count, and what the API cannot be sent refused before the call."""

from __future__ import annotations

import pytest
from backends.anthropic.anthropic_calls import collect
from support.chat_images import GIF, PNG_B64, image_chat
from support.fake_anthropic import FakeAnthropic

from modelyard.backends.anthropic.engine import AnthropicEngine
from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import common_pb2


async def test_an_image_part_is_a_base64_image_block_in_its_place(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    pieces = await collect(engine, image_chat("Describe it."))
    [call] = fake.received
    assert call.body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Describe it."},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64},
                },
            ],
        }
    ]
    assert pieces[-1].images == 1


async def test_an_https_image_is_a_url_source_and_a_gif_keeps_its_type(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    model_input = image_chat(image=common_pb2.Image(url="https://example.com/cat.jpg"))
    model_input.chat.messages[0].parts.add(image=common_pb2.Image(data=GIF))
    await collect(engine, model_input)
    blocks = fake.received[0].body["messages"][0]["content"]
    assert blocks[1] == {
        "type": "image",
        "source": {"type": "url", "url": "https://example.com/cat.jpg"},
    }
    assert blocks[2]["source"]["media_type"] == "image/gif"


async def test_a_blank_text_part_is_refused_before_the_call(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    model_input = image_chat("   ")
    with pytest.raises(InvalidRequest) as refused:
        await collect(engine, model_input)
    assert refused.value.field == "input.chat.messages[0].parts[0].text"
    assert fake.received == []


async def test_bytes_that_are_no_image_are_refused_before_the_call(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    model_input = image_chat(image=common_pb2.Image(data=b"not an image", mime_type="image/png"))
    with pytest.raises(InvalidRequest) as refused:
        await collect(engine, model_input)
    assert refused.value.message == (
        "input.chat.messages[0].parts[1].image.data is not a PNG/JPEG/WebP/GIF image"
    )
    assert fake.received == []
