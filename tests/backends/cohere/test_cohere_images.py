"""Image parts on Cohere's Chat v2: the content array of text and ``image_url`` items,
the usage's image count, and more images than Cohere takes refused before the call."""

from __future__ import annotations

import pytest
from backends.cohere.calls import collect
from support.chat_images import PNG_B64, image_chat
from support.fake_cohere import FakeCohere

from modelyard.backends.cohere.engine import CohereEngine
from modelyard.backends.cohere.request import MAX_IMAGES
from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import common_pb2


async def test_an_image_part_is_an_image_url_item_with_a_data_url(
    cohere: FakeCohere, engine: CohereEngine
) -> None:
    model_input = image_chat("Describe it.")
    model_input.chat.messages[0].parts.add(image=common_pb2.Image(url="https://example.com/a.png"))
    pieces = await collect(engine, model_input)
    assert cohere.bodies[0]["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Describe it."},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
            ],
        }
    ]
    assert pieces[-1].images == 2


async def test_more_images_than_cohere_takes_are_refused_before_the_call(
    cohere: FakeCohere, engine: CohereEngine
) -> None:
    model_input = image_chat()
    for _ in range(MAX_IMAGES):
        model_input.chat.messages[0].parts.add(image=model_input.chat.messages[0].parts[1].image)
    with pytest.raises(InvalidRequest) as refused:
        await collect(engine, model_input)
    assert refused.value.message == (
        "input.chat.messages: Cohere takes at most 20 images a request, not 21"
    )
    assert cohere.bodies == []
