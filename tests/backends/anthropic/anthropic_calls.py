"""What the anthropic backend's tests share: the engine's endpoint, inputs and one call."""

from __future__ import annotations

from support.fake_anthropic import API_KEY, FakeAnthropic

from modelyard.backends.anthropic.engine import AnthropicEngine
from modelyard.backends.engine import Piece
from modelyard.backends.openai_compat.providers import ProviderEndpoint
from modelyard_client.v1 import common_pb2

BACKEND = "claude"
MODEL = "claude/claude-haiku-4-5"  # the catalog id of the fake's first model


def endpoint_of(fake: FakeAnthropic, **fields: object) -> ProviderEndpoint:
    values: dict[str, object] = {
        "api_key": API_KEY,
        "models": ("claude-haiku-4-5", "claude-sonnet-4-5"),
        **fields,
    }
    return ProviderEndpoint(BACKEND, f"{fake.base_url}/v1", **values)  # type: ignore[arg-type]


def text_input(text: str = "Hello") -> common_pb2.Input:
    return common_pb2.Input(text=text)


def chat_input(*messages: tuple[str, str]) -> common_pb2.Input:
    model_input = common_pb2.Input()
    for role, content in messages:
        model_input.chat.messages.add(role=role, content=content)
    return model_input


def params(max_tokens: int = 64, **fields: object) -> common_pb2.GenerationParams:
    return common_pb2.GenerationParams(max_tokens=max_tokens, **fields)  # type: ignore[arg-type]


async def collect(
    engine: AnthropicEngine,
    model_input: common_pb2.Input | None = None,
    generation: common_pb2.GenerationParams | None = None,
    model_id: str = MODEL,
) -> list[Piece]:
    """Every piece of one call; the exception, if any, propagates after them."""
    pieces = []
    stream = engine.infer_stream(model_id, model_input or text_input(), generation or params())
    async for piece in stream:
        pieces.append(piece)
    return pieces
