"""What the bedrock engine's tests share: model ids, a request, and a call gathered."""

from __future__ import annotations

from support.fake_bedrock import MODELS

from modelyard.backends.bedrock.engine import BedrockEngine
from modelyard.backends.engine import Piece
from modelyard_client.v1 import common_pb2

NOVA, CLAUDE = MODELS
NOVA_ID = f"bedrock/{NOVA}"
CLAUDE_ID = f"bedrock/{CLAUDE}"


def text(prompt: str = "Name three rivers.") -> common_pb2.Input:
    return common_pb2.Input(text=prompt)


async def collect(
    engine: BedrockEngine,
    model_input: common_pb2.Input | None = None,
    params: common_pb2.GenerationParams | None = None,
    model_id: str = NOVA_ID,
) -> list[Piece]:
    """Every piece of one call (raising what the call raises)."""
    stream = engine.infer_stream(
        model_id, model_input or text(), params or common_pb2.GenerationParams(max_tokens=64)
    )
    return [piece async for piece in stream]
