"""Parameters a model cannot honour: refused, or left out and named when allowed.

The one rule every engine applies (speech first, hence the folder): Whisper has
no use for sampling beyond its temperature, and Piper for any sampling at all;
neither takes a response schema; no chat API speaks (`SPEECH_PARAMS`); Anthropic
and Bedrock take no seed. A request that sets one is refused with
`InvalidRequest` naming the parameter and the model (and the provider, in
`engine`), before any call or load, unless it sets
``params.drop_unsupported_params``: then the engine leaves the parameter out and
lists it in the last piece's `dropped_params` (`with_dropped`; GenerationParams
field names, in the proto's order).

A parameter is *set* when it holds anything but its default: an ``optional``
field present, a list with entries, a string not empty, a flag true.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace

from modelyard.backends.engine import Piece
from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import common_pb2

_FIELDS = common_pb2.GenerationParams.DESCRIPTOR.fields
# Text to speech's parameters: no chat or completion API takes them.
SPEECH_PARAMS = frozenset({"voice", "audio_format"})
# What a single prediction (a tensor or CoreML model) has no use for: every parameter but
# max_tokens (the gateway always sends one; nothing there counts tokens) and the tools
# (the host refuses those to an engine that takes none).
PREDICTION_PARAMS = SPEECH_PARAMS | {
    "temperature",
    "top_p",
    "top_k",
    "stop",
    "seed",
    "response_schema_json",
    "continue_final_message",
}


def dropped_params(
    params: common_pb2.GenerationParams,
    unsupported: Collection[str],
    model_id: str,
    engine: str,
) -> tuple[str, ...]:
    """The parameters of `unsupported` the request sets, to be listed as dropped; without
    ``drop_unsupported_params``, `InvalidRequest` naming the first of them. `engine`
    says what the model is in the message ("piper, text to speech")."""
    # What protobuf lists as set is what the module says: a present optional, a list with
    # entries, any other field holding more than its default.
    present = [field.name for field, _ in params.ListFields() if field.name in unsupported]
    if not present:  # the usual call: nothing to refuse or drop
        return ()
    given = tuple(f.name for f in _FIELDS if f.name in present)  # in the proto's order
    if given and not params.drop_unsupported_params:
        field = f"params.{given[0]}"
        raise InvalidRequest(
            f"{field} is not supported by model '{model_id}' ({engine})", field=field
        )
    return given


def with_dropped(piece: Piece, dropped: tuple[str, ...]) -> Piece:
    """`piece` with `dropped` as its `dropped_params` when it is the last piece."""
    if dropped and piece.finish_reason and not piece.dropped_params:
        return replace(piece, dropped_params=dropped)
    return piece
