"""Checks a request must pass before the gateway spends anything on it."""

from __future__ import annotations

from modelyard.backends.content_parts import check_message_parts, first_image_field
from modelyard.gateway.request_limits import check_bounds
from modelyard.gateway.settings import GatewaySettings
from modelyard.gateway.tools import check_tools, check_tools_for_model
from modelyard.model_input import input_modality, input_size_bytes
from modelyard_client.errors import ContextLengthExceeded, InvalidRequest, RequestTooLarge
from modelyard_client.v1 import common_pb2, gateway_pb2


def check_request(request: gateway_pb2.GenerateRequest, settings: GatewaySettings) -> None:
    """Raise a clear error for bad input; nothing is called before this passes."""
    limits = settings.input_limits
    check_bounds(request, limits=limits)  # first: the checks below may quote a field
    kind = request.input.WhichOneof("kind")
    turns = False  # a chat with tool calls or results: checked with the tools
    if kind is None:
        raise InvalidRequest(
            "input is empty: set one of text, chat, image, audio, structured", field="input"
        )
    if kind == "text" and not request.input.text.strip():
        raise InvalidRequest("input.text is empty", field="input.text")
    if kind == "chat":
        messages = request.input.chat.messages
        if not messages:
            raise InvalidRequest("input.chat has no messages", field="input.chat.messages")
        for i, m in enumerate(messages):
            turns = turns or m.role == "tool" or bool(m.tool_call_id) or len(m.tool_calls) > 0
            if m.role not in ("system", "user", "assistant", "tool"):
                raise InvalidRequest(
                    f"input.chat.messages[{i}].role {m.role!r} must be one of "
                    "system, user, assistant, tool",
                    field=f"input.chat.messages[{i}].role",
                )
        if not any(m.content.strip() or m.parts for m in messages):
            raise InvalidRequest("input.chat messages are all empty", field="input.chat.messages")
    # The gateway hands the selector `input` in place of task.input, but both arrived.
    for name, model_input in (("input", request.input), ("task.input", request.task.input)):
        size = input_size_bytes(model_input)
        if size > limits.max_input_bytes:
            raise RequestTooLarge(
                f"{name} is {size} bytes; the limit is {limits.max_input_bytes} bytes "
                "(security.input_limits.max_input_bytes)"
            )
    if kind == "chat":  # after the size: an image too big is not decoded to be refused
        for i, m in enumerate(request.input.chat.messages):
            if m.parts:
                check_message_parts(m, f"input.chat.messages[{i}]")
    params = request.params
    if params.max_tokens < 0:
        raise InvalidRequest(
            f"params.max_tokens must be >= 0, got {params.max_tokens}", field="params.max_tokens"
        )
    if params.max_tokens > limits.max_tokens:
        raise InvalidRequest(
            f"params.max_tokens {params.max_tokens} is above the gateway's ceiling of "
            f"{limits.max_tokens} (security.input_limits.max_tokens)",
            field="params.max_tokens",
        )
    if params.HasField("temperature") and not 0 <= params.temperature <= 2:
        raise InvalidRequest(
            f"params.temperature must be in [0, 2], got {params.temperature}",
            field="params.temperature",
        )
    if params.HasField("top_p") and not 0 < params.top_p <= 1:
        raise InvalidRequest(
            f"params.top_p must be in (0, 1], got {params.top_p}", field="params.top_p"
        )
    if params.HasField("top_k") and params.top_k < 0:
        raise InvalidRequest(f"params.top_k must be >= 0, got {params.top_k}", field="params.top_k")
    if params.tools or params.tool_choice or turns:
        check_tools(request)


def check_against_model(
    request: gateway_pb2.GenerateRequest,
    model: common_pb2.ModelEntry,
    max_tokens: int,
    input_tokens: int = 0,
) -> None:
    """Checks that need the chosen model's catalog entry.

    `input_tokens`: the input's estimate (`estimate_input_tokens`), counted
    against the context window for text and chat only: an image's or audio's
    bytes say nothing of the tokens a model makes of them. A window too small
    is `ContextLengthExceeded`, which a fallback chain passes on to the next model.
    """
    wanted = input_modality(request.input)  # never UNSPECIFIED: check_request ran first
    if model.input_modalities and wanted not in model.input_modalities:
        raise InvalidRequest(
            f"model '{model.id}' does not take {common_pb2.Modality.Name(wanted)} input",
            field="input",
        )
    check_tools_for_model(request, model)
    if common_pb2.CAPABILITY_VISION not in model.capabilities:
        image = first_image_field(request.input)
        if image is not None:
            raise InvalidRequest(
                f"model '{model.id}' does not take images (no CAPABILITY_VISION in the "
                f"catalog); {image} is one",
                field=image,
            )
    window = model.context_window
    if window and max_tokens > window:
        raise ContextLengthExceeded(
            f"params.max_tokens {max_tokens} exceeds model '{model.id}' context window "
            f"of {window} tokens",
            field="params.max_tokens",
        )
    if window and wanted == common_pb2.MODALITY_TEXT and input_tokens + max_tokens > window:
        raise ContextLengthExceeded(
            f"the input (about {input_tokens} tokens) and params.max_tokens {max_tokens} "
            f"exceed model '{model.id}' context window of {window} tokens",
            field="input",
        )
