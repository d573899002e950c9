"""Calls the Ollama engine tests make: inputs, and one generation's pieces."""

from __future__ import annotations

from modelyard.backends.engine import Piece
from modelyard.backends.ollama.engine import OllamaEngine
from modelyard_client.v1 import common_pb2

MODEL = "ollama/gemma3:270m"  # the catalog id of the fake's first model


def text_input(text: str = "Name a river.") -> common_pb2.Input:
    return common_pb2.Input(text=text)


def chat_input(*messages: tuple[str, str] | tuple[str, str, str]) -> common_pb2.Input:
    """(role, content) or (role, content, name) per message."""
    model_input = common_pb2.Input()
    model_input.chat.SetInParent()
    for m in messages:
        model_input.chat.messages.add(role=m[0], content=m[1], name=m[2] if len(m) > 2 else "")
    return model_input


async def collect(
    engine: OllamaEngine,
    model_input: common_pb2.Input | None = None,
    params: common_pb2.GenerationParams | None = None,
    model_id: str = MODEL,
) -> list[Piece]:
    """Every piece of one generation."""
    return [
        piece
        async for piece in engine.infer_stream(
            model_id, model_input or text_input(), params or common_pb2.GenerationParams()
        )
    ]
