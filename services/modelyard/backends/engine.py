"""The interface a backend kind implements, and helpers every engine shares."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, runtime_checkable

from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import common_pb2


@dataclass(frozen=True)
class Piece:
    """One streamed piece of output. The last piece has `finish_reason` and usage, and
    the calls the model asked for (`tool_calls`, each whole: an engine gathers a call's
    streamed fragments), with finish reason FINISH_REASON_TOOL_CALLS.

    `output`: this piece's part of what the answer holds beside text (speech, a
    transcript's segments, images, tensors), on any piece. The usage fields and
    `dropped_params` (parameters the provider cannot honour, left out because the
    request allowed it) count on the last piece only."""

    text: str
    finish_reason: common_pb2.FinishReason.ValueType = common_pb2.FINISH_REASON_UNSPECIFIED
    input_tokens: int = 0
    output_tokens: int = 0
    tool_calls: tuple[common_pb2.ToolCall, ...] = ()
    output: common_pb2.Output | None = None
    cached_input_tokens: int = 0
    characters: int = 0  # text to speech: the characters spoken
    audio_seconds: float = 0.0  # speech transcribed or spoken
    images: int = 0  # read or made
    dropped_params: tuple[str, ...] = ()

    def usage(self) -> common_pb2.Usage:
        """The last piece's usage as the wire has it (no cost: the gateway prices it)."""
        return common_pb2.Usage(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cached_input_tokens=self.cached_input_tokens,
            characters=self.characters,
            audio_seconds=self.audio_seconds,
            images=self.images,
        )


@dataclass(frozen=True)
class EngineHealth:
    status: common_pb2.HealthStatus.ValueType
    reason: str = ""


class Engine(Protocol):
    """A model engine inside a backend service (llama.cpp, an HTTP provider...)."""

    @property
    def kind(self) -> str:
        """The engine kind: "local", "openai_compat", ..."""
        ...

    @property
    def backend(self) -> str:
        """The configured backend's name: the first part of every catalog id it serves."""
        ...

    async def start(self) -> None:
        """Find the models this engine serves (may take a network round trip)."""

    async def close(self) -> None: ...

    def models(self) -> list[common_pb2.ModelEntry]:
        """Catalog entries (without deployments) for the models this engine serves."""
        ...

    def serves(self, model_id: str) -> bool:
        """Whether a call for `model_id` belongs to this engine (also models found later)."""
        ...

    def infer_stream(
        self,
        model_id: str,
        model_input: common_pb2.Input,
        params: common_pb2.GenerationParams,
    ) -> AsyncGenerator[Piece, None]:
        """Stream output; must end with a piece that has a finish reason, or raise."""
        ...

    async def load(self, model_id: str) -> float:
        """Make the model ready; returns the milliseconds it took."""
        ...

    async def unload(self, model_id: str) -> bool:
        """Release the model; returns whether it was loaded."""
        ...

    def loaded_models(self) -> list[str]: ...

    def health(self) -> EngineHealth: ...


def takes_tools(engine: object) -> bool:
    """Whether `engine` sends a request's tools and tool turns to its model (a class
    attribute ``takes_tools = True``); an engine without it is refused them by the host
    (`BackendHost.infer_stream`) rather than dropping them silently."""
    return bool(getattr(engine, "takes_tools", False))


def call_arguments(call: common_pb2.ToolCall, field: str, provider: str) -> dict[str, Any]:
    """A tool call's ``arguments_json`` as the JSON object every wire sends it as ("" is no
    arguments); `InvalidRequest` naming `field` (and `provider`) when it is not JSON or not
    an object."""
    if not call.arguments_json:
        return {}
    try:
        arguments = json.loads(call.arguments_json)
    except ValueError as exc:
        raise InvalidRequest(f"{field} is not JSON ({exc})", field=field) from None
    if not isinstance(arguments, dict):
        kind = type(arguments).__name__
        raise InvalidRequest(
            f"{field} is a JSON {kind}, and must be a JSON object: {provider} takes a call's "
            f"input as a JSON object, not {kind}",
            field=field,
        )
    return arguments


def uses_tools(model_input: common_pb2.Input, params: common_pb2.GenerationParams) -> bool:
    """Whether a request offers tools or carries tool turns (calls, results by id)."""
    if params.tools or params.tool_choice:
        return True
    if model_input.WhichOneof("kind") != "chat":
        return False
    return any(m.tool_calls or m.tool_call_id for m in model_input.chat.messages)


class Embeddings(NamedTuple):
    """What an engine's `embed` answers: one vector per input, in order, and the input
    tokens the upstream counted (0: it did not say; the gateway keeps its estimate)."""

    vectors: list[list[float]]
    input_tokens: int


@runtime_checkable
class EmbeddingEngine(Protocol):
    """An engine that also makes embeddings (an `Engine` with ``embed``); the host refuses
    Embed for a model of any other engine, naming its kind, before any upstream call."""

    async def embed(self, model_id: str, inputs: Sequence[str], dimensions: int) -> Embeddings:
        """One vector per input, in order; `dimensions` 0: the model's own length.

        A `dimensions` the provider cannot honour is `InvalidRequest` naming
        ``dimensions`` and the provider, before the call."""
        ...


@runtime_checkable
class BudgetedEngine(Protocol):
    """An engine whose loaded models share a memory budget (`modelyard.backends.loaded_models`).

    Beside `Engine`: a load that must not unload given models, and the wall
    time of each model load, for the model's performance profile.
    """

    async def load_beside(self, model_id: str, keep_loaded: Sequence[str]) -> float:
        """Load `model_id` without unloading any of `keep_loaded` (models this engine
        serves); `MemoryBudgetExceeded` when the budget cannot hold them together."""
        ...

    def report_cold_starts(self, report: Callable[[str, float], None]) -> None:
        """Call `report(model_id, milliseconds)` after each model load from now on."""
        ...


FINISH_REASONS: dict[str, common_pb2.FinishReason.ValueType] = {
    "stop": common_pb2.FINISH_REASON_STOP,
    "eos": common_pb2.FINISH_REASON_STOP,
    "length": common_pb2.FINISH_REASON_LENGTH,
    "tool_calls": common_pb2.FINISH_REASON_TOOL_CALLS,
    "function_call": common_pb2.FINISH_REASON_TOOL_CALLS,
    "content_filter": common_pb2.FINISH_REASON_CONTENT_FILTER,
}


def chat_messages(
    model_input: common_pb2.Input, content: MessageContent | None = None
) -> list[dict[str, Any]]:
    """The input as OpenAI-style chat messages (text becomes one user message).

    `content`: what a message's ``content`` is made of, given the message and its
    path (``input.chat.messages[2]``); by default its text, and an image part
    refused (`text_content`): an engine that sends images passes its own."""
    kind = model_input.WhichOneof("kind")
    if kind == "text":
        return [{"role": "user", "content": model_input.text}]
    if kind == "chat":
        make = content or text_content
        return [
            _message(m, make(m, f"input.chat.messages[{i}]"))
            for i, m in enumerate(model_input.chat.messages)
        ]
    raise InvalidRequest(f"this model takes text or chat input, not {kind or 'nothing'}")


MessageContent = Callable[[common_pb2.ChatMessage, str], Any]


def text_content(message: common_pb2.ChatMessage, where: str) -> str:
    """A message's text: `content`, or its text parts joined; `InvalidRequest` naming
    the first image part (an engine that takes no images)."""
    if not message.parts:
        return message.content
    texts = []
    for j, part in enumerate(message.parts):
        if part.WhichOneof("part") == "image":
            raise InvalidRequest(
                f"{where}.parts[{j}].image: this model takes text only, not images",
                field=f"{where}.parts[{j}].image",
            )
        texts.append(part.text)
    return "".join(texts)


def _message(m: common_pb2.ChatMessage, content: Any) -> dict[str, Any]:
    out = {"role": m.role, "content": content}
    if m.name:
        out["name"] = m.name
    return out
