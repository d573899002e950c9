"""What a request's `Input` says about itself before any model sees it.

The gateway checks a chosen model against these and reserves rate-limit
budget with the estimate; the selector derives a task from them. One rule
each, so a request is sized and typed the same way on both paths.
"""

from __future__ import annotations

import math

from modelyard_client.v1 import common_pb2

# Roughly four bytes of English text per token for common BPE tokenizers. An
# estimate only: it reserves budget and sizes a task; the real count settles it.
BYTES_PER_TOKEN = 4
# An image in a chat, whatever its bytes: Anthropic's vision guide puts an image at
# its largest unscaled size (1092x1092 px, tokens = width * height / 750) at ~1,590
# tokens; OpenAI's high detail 1024x1024 is 765, Gemini's 258 to 1,120. The most of
# them, so a budget reserves enough; the provider's count settles it.
TOKENS_PER_IMAGE = 1600

_MODALITY_OF_KIND = {
    "text": common_pb2.MODALITY_TEXT,
    "chat": common_pb2.MODALITY_TEXT,
    "image": common_pb2.MODALITY_IMAGE,
    "audio": common_pb2.MODALITY_AUDIO,
    "structured": common_pb2.MODALITY_STRUCTURED,
    "tensors": common_pb2.MODALITY_TENSOR,
}


def input_modality(model_input: common_pb2.Input) -> common_pb2.Modality.ValueType:
    """The modality of the input's kind (text and chat are text); UNSPECIFIED when empty."""
    kind = model_input.WhichOneof("kind")
    return _MODALITY_OF_KIND[kind] if kind else common_pb2.MODALITY_UNSPECIFIED


def input_size_bytes(model_input: common_pb2.Input) -> int:
    """The input's encoded size, what the gateway's size limit counts."""
    return model_input.ByteSize()


def estimate_input_tokens(model_input: common_pb2.Input) -> int:
    """Tokens the input will take, at `BYTES_PER_TOKEN` bytes each, rounded up; each
    image part of a chat counts `TOKENS_PER_IMAGE` instead of its bytes."""
    size = input_size_bytes(model_input)
    images = 0
    if model_input.WhichOneof("kind") == "chat":
        for message in model_input.chat.messages:
            if message.parts:  # tested first: iterating an empty one costs more
                for part in message.parts:
                    if part.WhichOneof("part") == "image":
                        size -= part.ByteSize()
                        images += 1
    return math.ceil(max(size, 0) / BYTES_PER_TOKEN) + images * TOKENS_PER_IMAGE
