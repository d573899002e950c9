"""Images inside chat messages (`ChatMessage.parts`): the gateway's checks, and a vision
model answering one through a real stack.

The checks run on `check_request` / `check_against_model` directly; the stack tests
put the gateway in front of the fake OpenAI-compatible upstream
(`backends/openai_compat/openai_fake.py`), one model declared a vision model and one
not (``model_profiles``), and count what reached it.
"""

from __future__ import annotations

import asyncio
import base64
import math
from collections.abc import AsyncIterator

import grpc
import pytest
from backends.openai_compat.openai_fake import FakeUpstream, chunk, usage_chunk
from conftest import StackFactory
from support.chat_images import GIF, JPEG, PNG, PNG_B64, WEBP, image_chat

from modelyard.assembly import Stack
from modelyard.backends.content_parts import MAX_IMAGE_URL_CHARS, read_image
from modelyard.config import parse_config
from modelyard.config.security import InputLimitsConfig
from modelyard.gateway.guardrails import Guardrails
from modelyard.gateway.redaction import Redaction
from modelyard.gateway.settings import GatewaySettings
from modelyard.gateway.validation import check_against_model, check_request
from modelyard.model_input import TOKENS_PER_IMAGE, estimate_input_tokens
from modelyard_client.errors import ContentBlocked, InvalidRequest, RequestTooLarge
from modelyard_client.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

VISION, TEXT_ONLY = "custom/seer", "custom/plain"
SETTINGS = GatewaySettings()


def _request(model_input: common_pb2.Input, model: str = VISION) -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=model)
    request.input.CopyFrom(model_input)
    request.params.max_tokens = 16
    return request


def _refused(request: gateway_pb2.GenerateRequest) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as refused:
        check_request(request, SETTINGS)
    return refused.value


def _image(**fields: object) -> common_pb2.Image:
    return common_pb2.Image(**fields)  # type: ignore[arg-type]


# ---- check_request ----------------------------------------------------------------


def test_an_image_in_each_allowed_type_and_form_passes() -> None:
    for data, mime in ((PNG, "image/png"), (JPEG, "image/jpeg"), (GIF, ""), (WEBP, "image/webp")):
        check_request(_request(image_chat(image=_image(data=data, mime_type=mime))), SETTINGS)
    data_url = f"data:image/png;base64,{PNG_B64}"
    check_request(_request(image_chat(image=_image(url=data_url))), SETTINGS)
    check_request(_request(image_chat(image=_image(url="https://example.com/a.png"))), SETTINGS)


def test_content_beside_parts_is_refused_naming_the_content() -> None:
    model_input = image_chat()
    model_input.chat.messages[0].content = "and this too"
    refused = _refused(_request(model_input))
    assert refused.field == "input.chat.messages[0].content"
    assert "must be empty when input.chat.messages[0].parts is set" in refused.message


def test_more_than_64_parts_are_refused_naming_the_parts() -> None:
    model_input = common_pb2.Input()
    message = model_input.chat.messages.add(role="user")
    for _ in range(64):
        message.parts.add(text="x")
    check_request(_request(model_input), SETTINGS)
    message.parts.add(text="x")
    refused = _refused(_request(model_input))
    assert refused.field == "input.chat.messages[0].parts"
    assert refused.message == "input.chat.messages[0].parts has 65 entries; the limit is 64"


def test_bytes_that_are_no_image_are_refused_naming_the_part() -> None:
    model_input = common_pb2.Input()
    model_input.chat.messages.add(role="system", content="Be brief.")
    model_input.chat.messages.add(role="assistant", content="Send it.")
    message = model_input.chat.messages.add(role="user")
    message.parts.add(text="Here:")
    message.parts.add(image=_image(data=b"%PDF-1.7 not a picture", mime_type="image/png"))
    refused = _refused(_request(model_input))
    assert refused.message == (
        "input.chat.messages[2].parts[1].image.data is not a PNG/JPEG/WebP/GIF image"
    )
    assert refused.field == "input.chat.messages[2].parts[1].image.data"


def test_a_mime_type_the_bytes_are_not_or_outside_the_four_is_refused() -> None:
    mismatch = _refused(_request(image_chat(image=_image(data=PNG, mime_type="image/jpeg"))))
    assert mismatch.field == "input.chat.messages[0].parts[1].image.data"
    assert mismatch.message == (
        "input.chat.messages[0].parts[1].image.data is a PNG image, not the image/jpeg "
        "its mime_type says"
    )
    bmp = _refused(_request(image_chat(image=_image(data=PNG, mime_type="image/bmp"))))
    assert bmp.field == "input.chat.messages[0].parts[1].image.mime_type"
    assert "'image/bmp' is not one of image/png, image/jpeg, image/webp, image/gif" in (bmp.message)


def test_urls_other_than_https_and_base64_data_are_refused() -> None:
    field = "input.chat.messages[0].parts[1].image.url"
    for url, problem in (
        ("http://example.com/a.png", "must be an https: URL or a data: URL (base64), not 'http'"),
        ("file:///etc/passwd", "not 'file'"),
        (f"data:image/png,{PNG_B64}", "is a data: URL that is not base64"),
        ("data:image/png;base64,@@@", "is a data: URL whose data is not base64"),
        ("data:image/png;base64," + base64.b64encode(b"plain text").decode(), "is not a PNG"),
    ):
        refused = _refused(_request(image_chat(image=_image(url=url))))
        assert refused.field == field
        assert problem in refused.message, url
    jpeg_url = f"data:image/jpeg;base64,{PNG_B64}"
    refused = _refused(_request(image_chat(image=_image(url=jpeg_url))))
    assert "is a PNG image, not the image/jpeg its mime_type says" in refused.message


def test_an_https_url_is_held_to_its_bound() -> None:
    at_bound = "https://example.com/" + "a" * (MAX_IMAGE_URL_CHARS - len("https://example.com/"))
    check_request(_request(image_chat(image=_image(url=at_bound))), SETTINGS)
    refused = _refused(_request(image_chat(image=_image(url=at_bound + "a"))))
    assert refused.message == (
        f"input.chat.messages[0].parts[1].image.url is {MAX_IMAGE_URL_CHARS + 1} characters "
        f"long; the limit for an https: URL is {MAX_IMAGE_URL_CHARS}"
    )


def test_an_image_part_needs_data_or_url_and_a_part_needs_something() -> None:
    refused = _refused(_request(image_chat(image=_image(mime_type="image/png"))))
    assert refused.field == "input.chat.messages[0].parts[1].image"
    assert refused.message == "input.chat.messages[0].parts[1].image has neither data nor url"
    model_input = image_chat()
    model_input.chat.messages[0].parts.add()
    refused = _refused(_request(model_input))
    assert refused.message == "input.chat.messages[0].parts[2] is empty: set text or image"


def test_an_image_outside_a_user_message_is_refused() -> None:
    model_input = image_chat()
    model_input.chat.messages[0].role = "assistant"
    refused = _refused(_request(model_input))
    assert refused.field == "input.chat.messages[0].parts[1].image"
    assert "is in a 'assistant' message: images go in user messages only" in refused.message
    model_input.chat.messages[0].parts.pop()  # text parts are fine in any role
    check_request(_request(model_input), SETTINGS)


def test_image_bytes_count_in_the_input_size_limit_before_they_are_read() -> None:
    big = PNG + b"\x00" * 2_000_000  # a PNG's magic number, 2 MB of it
    settings = GatewaySettings(InputLimitsConfig(max_input_bytes=1_048_576))
    request = _request(image_chat(image=_image(data=big)))
    with pytest.raises(RequestTooLarge) as refused:
        check_request(request, settings)
    assert refused.value.message == (
        f"input is {request.input.ByteSize()} bytes; the limit is 1048576 bytes "
        "(security.input_limits.max_input_bytes)"
    )
    not_an_image = b"\x00" * 2_000_000  # refused for its size, never decoded
    with pytest.raises(RequestTooLarge):
        check_request(_request(image_chat(image=_image(data=not_an_image))), settings)


def test_a_data_url_is_read_into_the_bytes_it_carries() -> None:
    image = read_image(_image(url=f"data:image/png;base64,{PNG_B64}"), "f")
    assert (image.data, image.mime_type, image.url) == (PNG, "image/png", "")
    sniffed = read_image(_image(data=GIF), "f")
    assert sniffed.mime_type == "image/gif"  # no mime_type given: the bytes say it


# ---- check_against_model and the estimate ---------------------------------------


def _entry(model_id: str, *capabilities: common_pb2.Capability.ValueType) -> common_pb2.ModelEntry:
    return common_pb2.ModelEntry(
        id=model_id, capabilities=[common_pb2.CAPABILITY_CHAT, *capabilities]
    )


def test_a_model_without_vision_is_refused_an_image_naming_it() -> None:
    request = _request(image_chat(), TEXT_ONLY)
    with pytest.raises(InvalidRequest) as refused:
        check_against_model(request, _entry(TEXT_ONLY), 16)
    assert refused.value.message == (
        "model 'custom/plain' does not take images (no CAPABILITY_VISION in the catalog); "
        "input.chat.messages[0].parts[1].image is one"
    )
    assert refused.value.field == "input.chat.messages[0].parts[1].image"
    check_against_model(request, _entry(VISION, common_pb2.CAPABILITY_VISION), 16)
    text_parts = common_pb2.Input()
    text_parts.chat.messages.add(role="user").parts.add(text="hi")
    check_against_model(_request(text_parts, TEXT_ONLY), _entry(TEXT_ONLY), 16)


def test_an_image_is_estimated_at_a_fixed_count_whatever_its_bytes() -> None:
    text_only = common_pb2.Input()
    text_only.chat.messages.add(role="user").parts.add(text="What is in this picture?")
    base = estimate_input_tokens(text_only)
    small = estimate_input_tokens(image_chat())
    large = estimate_input_tokens(image_chat(image=_image(data=PNG + b"\x00" * 400_000)))
    # The framing around the part (the lengths of the part, its message and the chat,
    # a byte or two more each for a bigger image) is counted as text.
    assert base + TOKENS_PER_IMAGE <= small <= base + TOKENS_PER_IMAGE + 1
    assert small <= large <= small + 2
    assert math.ceil(400_000 / 4) > large  # not its bytes at four a token


# ---- guardrails and redaction read text parts -------------------------------------


def test_a_deny_rule_matches_a_text_part() -> None:
    config = parse_config(
        "model_system:\n  security:\n    guardrails:\n"
        "      deny_rules: [{name: no_codenames, terms: [Project Falcon]}]\n"
    ).security.guardrails
    request = _request(image_chat("Tell me about Project Falcon"))
    with pytest.raises(ContentBlocked) as blocked:
        Guardrails(config).check_input(request)
    assert blocked.value.field == "input.chat.messages[0].parts[0].text"


def test_redaction_rewrites_text_parts_and_leaves_images_alone() -> None:
    config = parse_config("model_system:\n  security:\n    redaction: {enabled: true}\n")
    stage = Redaction.from_config(config.security.redaction)
    assert stage is not None
    request = _request(image_chat("Mail ada@example.com about this"))
    redacted, placeholders = stage.redact(request)
    parts = redacted.input.chat.messages[0].parts
    assert parts[0].text == "Mail [EMAIL_1] about this"
    assert parts[1].image.data == PNG
    assert placeholders.restore("[EMAIL_1]") == "ada@example.com"


# ---- through a real stack ---------------------------------------------------------


async def _stack(make_stack: StackFactory, upstream: FakeUpstream) -> Stack:
    upstream.models = ["seer", "plain"]
    config = parse_config(
        f"""
model_system:
  backends:
    custom:
      kind: openai_compat
      endpoint: "{upstream.url}"
      model_profiles:
        seer: {{capabilities: [chat, streaming, vision]}}
        plain: {{capabilities: [chat, streaming]}}
"""
    )
    stack = await make_stack(roles=("registry", "gateway", "backend-openai-compat"), config=config)
    assert stack.view is not None
    deadline = asyncio.get_running_loop().time() + 5
    while {m.id for m in stack.view.models()} != {VISION, TEXT_ONLY}:
        assert asyncio.get_running_loop().time() < deadline, "the catalog copy never caught up"
        await asyncio.sleep(0.02)
    return stack


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    fake = FakeUpstream()
    await fake.start()
    yield fake
    await fake.stop()


async def test_a_vision_model_answers_a_chat_with_an_image(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    upstream.stream(
        [
            chunk("A black pixel.", role="assistant"),
            chunk(finish_reason="stop"),
            usage_chunk(1611, 4),
        ]
    )
    stack = await _stack(make_stack, upstream)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        answer = await gateway_pb2_grpc.GatewayServiceStub(channel).Generate(
            _request(image_chat()), timeout=10
        )
    assert answer.text == "A black pixel."
    assert answer.usage.images == 1
    assert answer.usage.input_tokens == 1611
    [body] = upstream.bodies
    assert body["model"] == "seer"
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
            ],
        }
    ]


async def test_bad_images_and_a_model_without_vision_are_refused_before_any_upstream_call(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    stack = await _stack(make_stack, upstream)
    content_too = image_chat()
    content_too.chat.messages[0].content = "also"
    too_many = common_pb2.Input()
    crowded = too_many.chat.messages.add(role="user")
    for _ in range(65):
        crowded.parts.add(text="x")
    cases = [
        (_request(image_chat(), TEXT_ONLY), grpc.StatusCode.INVALID_ARGUMENT, "'custom/plain'"),
        (_request(content_too), grpc.StatusCode.INVALID_ARGUMENT, "content must be empty"),
        (
            _request(image_chat(image=_image(data=b"GIF00 nope"))),
            grpc.StatusCode.INVALID_ARGUMENT,
            "is not a PNG/JPEG/WebP/GIF image",
        ),
        (
            _request(image_chat(image=_image(data=PNG, mime_type="image/tiff"))),
            grpc.StatusCode.INVALID_ARGUMENT,
            "'image/tiff' is not one of",
        ),
        (_request(too_many), grpc.StatusCode.INVALID_ARGUMENT, "has 65 entries"),
        (
            _request(image_chat(image=_image(data=PNG + b"\x00" * 1_100_000))),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "security.input_limits.max_input_bytes",
        ),
    ]
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        for request, code, says in cases:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Generate(request, timeout=10)
            assert refused.value.code() == code, says
            assert says in (refused.value.details() or ""), says
    assert upstream.bodies == []
