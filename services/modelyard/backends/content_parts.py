"""A chat message's content parts (`ChatMessage.parts`): text and images, in order.

A message holds its content in `content` or, for a vision model, in `parts`
(the gateway refuses both at once). `message_items` is the walk every chat
engine makes before writing its provider's blocks: the message's content as
`str` and `ChatImage` items. `read_image` is the one check of an image part,
made by the gateway before anything is called (`gateway/validation.py`) and
again when an engine reads the part, so an engine never sends what the
gateway would refuse.

An image comes as its bytes (`Image.data`), a ``data:`` URL (base64: read
into bytes here, so a provider that takes only bytes gets them) or an
``https:`` URL (at most `MAX_IMAGE_URL_CHARS`), passed on to a provider that
fetches URLs and refused, naming the field, by one that does not. Its type is
one of `IMAGE_TYPES`, known from the bytes' magic numbers; a declared
`mime_type` must be the one the bytes are. Images go in ``user`` messages
only: every provider here takes them there, and not all take them elsewhere.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, replace
from typing import Any

from modelyard.backends.engine import Piece
from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import common_pb2

# The types every vision provider here takes (OpenAI, Anthropic, Bedrock Converse,
# Cohere); Gemini takes all but GIF (its engine refuses that one).
IMAGE_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WebP", "image/gif": "GIF"}
# Long enough for a signed object-store URL (S3 presigned URLs run to ~1,500 characters).
MAX_IMAGE_URL_CHARS = 8192
IMAGE_ROLES = ("user",)
_NOT_AN_IMAGE = "is not a PNG/JPEG/WebP/GIF image"


@dataclass(frozen=True)
class ChatImage:
    """One image part, read: its bytes and their type, or an ``https:`` URL.

    `field`: the part's path (``input.chat.messages[2].parts[1].image``), for the
    errors; `mime_type` is "" only for a URL sent without one."""

    field: str
    mime_type: str
    data: bytes = b""
    url: str = ""

    def base64(self) -> str:
        """The bytes, base64 (standard alphabet, padded), as JSON bodies carry them."""
        return base64.b64encode(self.data).decode("ascii")

    def data_url(self) -> str:
        """The ``https:`` URL, or the bytes as a ``data:`` URL (OpenAI's ``image_url.url``)."""
        return self.url or f"data:{self.mime_type};base64,{self.base64()}"

    def refuse_url(self, provider: str, why: str = "") -> None:
        """`InvalidRequest` naming the URL and `provider` when this image is a URL
        (`why`: what the provider takes instead, in parentheses)."""
        if self.url:
            raise InvalidRequest(
                f"{self.field}.url: {provider} takes an image's bytes, not a URL{why}; "
                "send Image.data or a data: URL",
                field=f"{self.field}.url",
            )


ContentItem = str | ChatImage


def message_items(message: common_pb2.ChatMessage, where: str) -> list[ContentItem]:
    """The message's content in order: its text parts as `str`, its images read
    (`read_image`); a message without parts is its `content` (nothing when empty).
    `where`: the message's path, ``input.chat.messages[2]``."""
    if not message.parts:
        return [message.content] if message.content else []
    items: list[ContentItem] = []
    for j, part in enumerate(message.parts):
        if part.WhichOneof("part") == "image":
            items.append(read_image(part.image, f"{where}.parts[{j}].image"))
        else:
            items.append(part.text)
    return items


def image_count(model_input: common_pb2.Input) -> int:
    """The image parts of a chat input (what `Usage.images` counts as read)."""
    if model_input.WhichOneof("kind") != "chat":
        return 0
    return sum(
        1
        for m in model_input.chat.messages
        if m.parts
        for p in m.parts
        if p.WhichOneof("part") == "image"
    )


def sniff_image_type(data: bytes) -> str | None:
    """The type of `IMAGE_TYPES` the bytes' magic numbers say, or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return None


def read_image(image: common_pb2.Image, field: str) -> ChatImage:
    """The image part at `field`, checked: `InvalidRequest` naming what is wrong."""
    source = image.WhichOneof("source")
    declared = image.mime_type
    if declared and declared not in IMAGE_TYPES:
        raise InvalidRequest(
            f"{field}.mime_type {declared!r} is not one of {', '.join(IMAGE_TYPES)}",
            field=f"{field}.mime_type",
        )
    if source == "data":
        return ChatImage(field, _checked_type(image.data, declared, f"{field}.data"), image.data)
    if source != "url" or not image.url:
        raise InvalidRequest(f"{field} has neither data nor url", field=field)
    url = image.url
    if url.startswith("data:"):
        media_type, data = _data_url(url, f"{field}.url")
        if declared and media_type and declared != media_type:
            raise InvalidRequest(
                f"{field}.mime_type {declared!r} is not the data: URL's {media_type!r}",
                field=f"{field}.mime_type",
            )
        return ChatImage(field, _checked_type(data, declared or media_type, f"{field}.url"), data)
    if not url.startswith("https://"):
        raise InvalidRequest(
            f"{field}.url must be an https: URL or a data: URL (base64), not "
            f"{url.split(':', 1)[0][:16]!r}",
            field=f"{field}.url",
        )
    if len(url) > MAX_IMAGE_URL_CHARS:
        raise InvalidRequest(
            f"{field}.url is {len(url)} characters long; the limit for an https: URL is "
            f"{MAX_IMAGE_URL_CHARS}",
            field=f"{field}.url",
        )
    return ChatImage(field, declared, url=url)


def _checked_type(data: bytes, declared: str, field: str) -> str:
    sniffed = sniff_image_type(data)
    if sniffed is None:
        raise InvalidRequest(f"{field} {_NOT_AN_IMAGE}", field=field)
    if declared and declared != sniffed:
        raise InvalidRequest(
            f"{field} is a {IMAGE_TYPES[sniffed]} image, not the {declared} its mime_type says",
            field=field,
        )
    return sniffed


def _data_url(url: str, field: str) -> tuple[str, bytes]:
    """(media type, bytes) of a base64 ``data:`` URL (RFC 2397)."""
    header, comma, payload = url.partition(",")
    params = header.removeprefix("data:").split(";")
    if not comma or params[-1] != "base64":
        raise InvalidRequest(
            f"{field} is a data: URL that is not base64 (data:<type>;base64,<data>)", field=field
        )
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(
            f"{field} is a data: URL whose data is not base64", field=field
        ) from None
    return params[0], data


def with_images(piece: Piece, images: int) -> Piece:
    """`piece` with `Piece.images` set to `images` (the input's image parts, `image_count`)
    when it is the last piece and the provider's answer did not count them itself."""
    if images and piece.finish_reason and not piece.images:
        return replace(piece, images=images)
    return piece


def check_message_parts(message: common_pb2.ChatMessage, where: str) -> int:
    """The gateway's checks of one chat message's parts (the 64-part bound is
    `request_limits`'): `InvalidRequest` naming the field; returns its image parts."""
    if not message.parts:
        return 0
    if message.content:
        raise InvalidRequest(
            f"{where}.content must be empty when {where}.parts is set: the parts are the "
            "message's content",
            field=f"{where}.content",
        )
    images = 0
    for j, part in enumerate(message.parts):
        field = f"{where}.parts[{j}]"
        kind = part.WhichOneof("part")
        if kind is None:
            raise InvalidRequest(f"{field} is empty: set text or image", field=field)
        if kind == "text":
            if not part.text:
                raise InvalidRequest(f"{field}.text is empty", field=f"{field}.text")
            continue
        if message.role not in IMAGE_ROLES:
            raise InvalidRequest(
                f"{field}.image is in a {message.role!r} message: images go in user messages only",
                field=f"{field}.image",
            )
        read_image(part.image, f"{field}.image")
        images += 1
    return images


def first_image_field(model_input: common_pb2.Input) -> str | None:
    """The path of the input's first image part (``input.chat.messages[i].parts[j].image``)."""
    if model_input.WhichOneof("kind") != "chat":
        return None
    for i, m in enumerate(model_input.chat.messages):
        if m.parts:  # tested first: iterating an empty one costs more
            for j, p in enumerate(m.parts):
                if p.WhichOneof("part") == "image":
                    return f"input.chat.messages[{i}].parts[{j}].image"
    return None


def image_url_content(message: common_pb2.ChatMessage, where: str) -> str | list[dict[str, Any]]:
    """A message's ``content`` on OpenAI's chat completions wire: its text, or with parts
    the content array of ``{"type": "text", "text"}`` and ``{"type": "image_url",
    "image_url": {"url"}}`` (the https URL, or the bytes as a data: URL), as the OpenAI
    API reference's ``ChatCompletionRequestMessageContentPartImage`` has it (openai-openapi,
    2025). Cohere's Chat v2 takes the same blocks (docs.cohere.com/docs/image-inputs)."""
    if not message.parts:
        return message.content
    blocks: list[dict[str, Any]] = []
    for item in message_items(message, where):
        if isinstance(item, str):
            blocks.append({"type": "text", "text": item})
        else:
            blocks.append({"type": "image_url", "image_url": {"url": item.data_url()}})
    return blocks
