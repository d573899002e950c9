"""Image parts on Gemini: ``inlineData`` parts in their place beside the text, the usage's
image count, and what Gemini cannot take (a URL, a GIF) refused before any call."""

from __future__ import annotations

import base64

import pytest
from backends.gemini.gemini_engines import collect
from support.chat_images import GIF, JPEG, PNG_B64, image_chat
from support.fake_gemini import FakeGemini, response

from modelyard.backends.gemini import GeminiEngine
from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import common_pb2

JPEG_B64 = base64.b64encode(JPEG).decode("ascii")
DONE = [response("A black pixel.", finish="STOP", usage=(260, 4))]


async def test_an_image_part_is_an_inline_data_part_in_its_place(
    fake: FakeGemini, studio: GeminiEngine
) -> None:
    fake.stream(DONE)
    model_input = image_chat("Describe it.")
    model_input.chat.messages[0].parts.add(text="Briefly.")
    model_input.chat.messages[0].parts.add(image=common_pb2.Image(data=JPEG))
    pieces = await collect(studio, model_input)
    [call] = fake.calls
    assert isinstance(call.body, dict)
    assert call.body["contents"] == [
        {
            "role": "user",
            "parts": [
                {"text": "Describe it."},
                {"inlineData": {"mimeType": "image/png", "data": PNG_B64}},
                {"text": "Briefly."},
                {"inlineData": {"mimeType": "image/jpeg", "data": JPEG_B64}},
            ],
        }
    ]
    assert pieces[-1].images == 2
    assert pieces[-1].input_tokens == 260


@pytest.mark.parametrize(
    ("image", "field", "says"),
    [
        (
            common_pb2.Image(url="https://example.com/cat.png"),
            "input.chat.messages[0].parts[1].image.url",
            "takes an image's bytes, not a URL (its fileData takes Files API and Cloud "
            "Storage URIs only)",
        ),
        (
            common_pb2.Image(data=GIF),
            "input.chat.messages[0].parts[1].image.data",
            "takes PNG, JPEG and WebP images, not image/gif",
        ),
    ],
)
async def test_what_gemini_cannot_take_is_refused_naming_the_field(
    fake: FakeGemini,
    studio: GeminiEngine,
    image: common_pb2.Image,
    field: str,
    says: str,
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        await collect(studio, image_chat(image=image))
    assert refused.value.field == field
    assert says in refused.value.message
    assert "the 'gemini' backend (Gemini)" in refused.value.message
    assert fake.calls == []


async def test_a_model_the_catalog_lists_with_vision_is_announced_with_it(
    studio: GeminiEngine,
) -> None:
    [entry] = [m for m in studio.models() if m.name == "gemini-2.5-flash"]
    assert common_pb2.CAPABILITY_VISION in entry.capabilities
