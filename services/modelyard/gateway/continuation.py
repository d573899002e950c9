"""A stream that broke off after output: how it is continued, or how its end is said.

`cut_short` is the error such a stream ends with when nothing continues it;
`continuing_model` finds the model of the chain that can continue it from the
text already sent (an assistant prefill, `Prefill`); `GatewayCore._continued`
streams that continuation.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelyard.gateway.catalog_view import CatalogView
from modelyard.gateway.settings import GatewaySettings
from modelyard.model_input import estimate_input_tokens
from modelyard.servable import servable_health
from modelyard_client.errors import ModelNotFound, ModelyardError, StreamTruncated
from modelyard_client.v1 import common_pb2, gateway_pb2


@dataclass(frozen=True)
class Prefill:
    """What a continuation (`GatewayCore._continued`) sends: the answer so far."""

    text: str  # as the caller received it
    tokens: int  # its estimate, counted against max_tokens
    max_tokens: int  # what is left of the request's

    def after(self, model_input: common_pb2.Input) -> common_pb2.Input:
        """`model_input` as chat messages (a text input is one user message), then `text`
        as the assistant's, to be continued (`GenerationParams.continue_final_message`)."""
        out = common_pb2.Input()
        if model_input.WhichOneof("kind") == "text":
            out.chat.messages.add(role="user", content=model_input.text)
        else:
            out.chat.CopyFrom(model_input.chat)
        out.chat.messages.add(role="assistant", content=self.text)
        return out


def characters_of(chunks: list[gateway_pb2.GenerateChunk]) -> int:
    return sum(len(chunk.text) for chunk in chunks)


def cut_short(
    model_id: str, delivered: int, characters: int, cause: ModelyardError
) -> StreamTruncated:
    """ABORTED for a stream that failed after output, whatever the failure's own code:
    UNAVAILABLE or RESOURCE_EXHAUSTED would tell the caller a retry is safe."""
    chunks = f"{delivered} chunk{'s' if delivered != 1 else ''}"
    return StreamTruncated(
        f"the answer of '{model_id}' was cut short after {chunks} ({characters} characters) "
        f"had reached the caller: {cause.message}"
    )


def continuing_model(
    catalog: CatalogView,
    later: list[str],
    request: gateway_pb2.GenerateRequest,
    answered_by: set[str],
    text: str,
    settings: GatewaySettings,
) -> tuple[str, Prefill] | None:
    """The first of `later` (the chain after the model that broke off, fallbacks
    included) that can continue `text` as an assistant prefill, with the prefill to
    send it; None when none can."""
    if request.input.WhichOneof("kind") not in ("text", "chat"):
        return None
    tokens = estimate_input_tokens(common_pb2.Input(text=text))
    left = (request.params.max_tokens or settings.default_max_tokens) - tokens
    if left < 1:  # the answer has had its max_tokens, as far as the estimate says
        return None
    prefill = Prefill(text, tokens, left)
    needed = estimate_input_tokens(prefill.after(request.input)) + left
    for model_id in later:
        if model_id in answered_by:
            continue
        try:
            model = catalog.get(model_id)
        except ModelNotFound:
            continue
        if common_pb2.CAPABILITY_ASSISTANT_PREFILL not in model.capabilities:
            continue
        if not servable_health(model.health) or not model.deployments:
            continue
        if model.context_window and needed > model.context_window:
            continue
        return model_id, prefill
    return None
