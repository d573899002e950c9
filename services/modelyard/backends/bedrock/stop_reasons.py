"""What a Converse answer's ``stopReason`` means, streamed or not.

The values are the Bedrock Runtime API reference's StopReason (API version
2023-09-30): ``end_turn`` and ``stop_sequence`` are a natural end, ``max_tokens``
and ``model_context_window_exceeded`` a cut for length, ``tool_use`` a tool call.
``content_filtered`` (the model's own filter) and ``guardrail_intervened`` (a
Bedrock guardrail) are refusals of the answer: `ContentRejected`, never a
finished answer. ``malformed_model_output`` and ``malformed_tool_use`` are the
model failing: `ProviderError`. A reason added later still ends the answer.
"""

from __future__ import annotations

from modelyard_client.errors import ContentRejected, ProviderError
from modelyard_client.v1 import common_pb2

FINISH_REASONS: dict[str, common_pb2.FinishReason.ValueType] = {
    "end_turn": common_pb2.FINISH_REASON_STOP,
    "stop_sequence": common_pb2.FINISH_REASON_STOP,
    "max_tokens": common_pb2.FINISH_REASON_LENGTH,
    "model_context_window_exceeded": common_pb2.FINISH_REASON_LENGTH,
    "tool_use": common_pb2.FINISH_REASON_TOOL_CALLS,
}
REJECTED = {
    "content_filtered": "the model's content filter stopped it",
    "guardrail_intervened": "a guardrail intervened",
}
MALFORMED = frozenset({"malformed_model_output", "malformed_tool_use"})


def finish_reason(
    backend: str, model_id: str, stop_reason: str
) -> common_pb2.FinishReason.ValueType:
    """The finish reason of a finished answer; raises when the stop reason refuses it."""
    where = f"Bedrock backend '{backend}'"
    if stop_reason in REJECTED:
        raise ContentRejected(
            f"{where}: the answer of '{model_id}' was refused ({REJECTED[stop_reason]}; "
            f"stopReason {stop_reason})",
            provider_code=stop_reason,
        )
    if stop_reason in MALFORMED:
        raise ProviderError(
            f"{where}: '{model_id}' produced malformed output (stopReason {stop_reason})"
        )
    return FINISH_REASONS.get(stop_reason, common_pb2.FINISH_REASON_STOP)
