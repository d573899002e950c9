"""Image parts on Bedrock's Converse API: ``ImageBlock`` content blocks with the format
and base64 bytes, the usage's image count, and an https URL refused before the call."""

from __future__ import annotations

import base64

import pytest
from backends.bedrock.calls import collect
from support.chat_images import PNG_B64, WEBP, image_chat
from support.fake_bedrock import FakeBedrock

from modelyard.backends.bedrock.engine import BedrockEngine
from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import common_pb2


async def test_an_image_part_is_an_image_block_with_its_format_and_bytes(
    engine: BedrockEngine, bedrock: FakeBedrock
) -> None:
    model_input = image_chat("Describe it.")
    model_input.chat.messages[0].parts.add(image=common_pb2.Image(data=WEBP))
    pieces = await collect(engine, model_input)
    [received] = bedrock.requests
    assert received.body["messages"] == [
        {
            "role": "user",
            "content": [
                {"text": "Describe it."},
                {"image": {"format": "png", "source": {"bytes": PNG_B64}}},
                {
                    "image": {
                        "format": "webp",
                        "source": {"bytes": base64.b64encode(WEBP).decode("ascii")},
                    }
                },
            ],
        }
    ]
    assert pieces[-1].images == 2


async def test_an_https_image_is_refused_naming_the_url_before_the_call(
    engine: BedrockEngine, bedrock: FakeBedrock
) -> None:
    model_input = image_chat(image=common_pb2.Image(url="https://example.com/cat.png"))
    with pytest.raises(InvalidRequest) as refused:
        await collect(engine, model_input)
    assert refused.value.field == "input.chat.messages[0].parts[1].image.url"
    assert refused.value.message == (
        "input.chat.messages[0].parts[1].image.url: Bedrock's Converse API (provider "
        "bedrock) takes an image's bytes, not a URL (it reads bytes or S3 objects); send "
        "Image.data or a data: URL"
    )
    assert bedrock.requests == []
