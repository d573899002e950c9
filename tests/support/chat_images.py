"""Small real images and chat requests that carry them, for the content-parts tests."""

from __future__ import annotations

import base64
import struct
import zlib

from modelyard_client.v1 import common_pb2


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int = 1, height: int = 1) -> bytes:
    """A valid RGB PNG of `width` x `height` black pixels (PNG spec, ISO/IEC 15948)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\x00\x00\x00" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(rows))
        + _png_chunk(b"IEND", b"")
    )


PNG = png()
# A JPEG's start of image and JFIF APP0 marker: what the magic-number check reads.
JPEG = bytes.fromhex("ffd8ffe000104a46494600010100000100010000ffd9")
GIF = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"
WEBP = (  # a 1x1 lossless WebP (RIFF container, VP8L chunk)
    b"RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00/\x00\x00\x00\x10\x07\x10\x11\x11\x88\x88\xfe\x07\x00"
)
PNG_B64 = base64.b64encode(PNG).decode("ascii")


def image_chat(
    text: str = "What is in this picture?",
    image: common_pb2.Image | None = None,
) -> common_pb2.Input:
    """A chat of one user message: `text` then `image` (a 1x1 PNG by default)."""
    model_input = common_pb2.Input()
    message = model_input.chat.messages.add(role="user")
    message.parts.add(text=text)
    message.parts.add(image=image or common_pb2.Image(data=PNG, mime_type="image/png"))
    return model_input
