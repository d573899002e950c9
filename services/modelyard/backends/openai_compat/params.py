"""What the OpenAI wire's chat body makes of `GenerationParams`, provider by provider.

The OpenAI wire is one format with dialects. Which one an upstream speaks is its
`ProviderEndpoint.dialect` (`dialect_of`): a hosted entry's kind (``openai``,
``mistral``, ``openrouter``), whatever the entry is called; an `openai_compat`
entry is a generic OpenAI-compatible server (llama_cpp.server, vLLM,
llama.cpp's llama-server, LM Studio...). Checked against each reference:

==================  ==========================  ================================  ===========
provider            top_k                       seed                              usage asked
==================  ==========================  ================================  ===========
openai              none: refused / dropped     ``seed``                          stream_options
mistral             none: refused / dropped     ``random_seed``                   sent unasked
openrouter          ``top_k`` (passed on)       ``seed``                          stream_options
openai_compat       ``top_k``                   ``seed``                          stream_options
==================  ==========================  ================================  ===========

- OpenAI's Chat Completions reference (https://platform.openai.com/docs/api-reference/chat,
  create, 2025) has ``temperature``, ``top_p``, ``seed``, ``stop``, ``max_tokens`` and no
  ``top_k``; ``response_format`` ``{"type": "json_schema", "json_schema": {"name",
  "schema", "strict"}}`` (Structured Outputs).
- Mistral's chat completion (https://docs.mistral.ai/api/, ``ChatCompletionRequest``,
  2025): ``random_seed`` rather than ``seed``, no ``top_k``, ``response_format`` with
  ``json_schema`` as OpenAI's. Its validation refuses any field it does not know with
  a 422 "Extra inputs are not permitted" (``stream_options`` among them:
  mistralai/platform-docs-public#7 and the 422 bodies quoted in client issues), and
  its stream carries the usage on its last chunk unasked.
- OpenRouter's parameters (https://openrouter.ai/docs/api-reference/parameters):
  ``top_k`` and ``seed`` passed on to the model's provider; ``response_format``
  ``json_schema`` passed on to models that support structured outputs.
- llama_cpp.server (0.3.x, ``llama_cpp.server.types.CreateChatCompletionRequest``):
  ``top_k``, ``seed``, and ``response_format`` ``{"type": "json_object", "schema"}``
  only (``type`` is ``"text"`` or ``"json_object"``: a ``json_schema`` type is a 422).
  llama.cpp's llama-server takes that form too; vLLM reads it as JSON mode, the schema
  not enforced. So a generic server is sent that form.

Whatever the upstream does with a schema, the gateway validates the whole answer
against it when ``security.guardrails.validate_output_schema`` is on
(`gateway.guardrails`), for every provider alike.

No chat completions API here speaks or takes a ``voice`` or ``audio_format``
(speech is `/audio/speech`, not this body). A parameter the provider cannot honour
is refused with `InvalidRequest` naming it and the provider, before any call, or
with ``params.drop_unsupported_params`` left out and named in the last piece's
``dropped_params`` (`speech.unsupported_params.dropped_params`, the one rule).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from modelyard.backends.speech.unsupported_params import SPEECH_PARAMS, dropped_params
from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import common_pb2

GENERIC = "openai_compat"
# OpenAI's rule for `json_schema.name`.
_SCHEMA_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class WireDialect:
    """How one provider takes the chat body's parameters (see the module table)."""

    api: str  # named in a refusal: "OpenAI's Chat Completions API"
    unsupported: frozenset[str]  # GenerationParams fields it cannot honour
    seed_field: str = "seed"
    asks_usage: bool = True  # sends ``stream_options.include_usage``
    json_schema: bool = True  # response_format json_schema, else json_object + schema


DIALECTS = {
    "openai": WireDialect("OpenAI's Chat Completions API", SPEECH_PARAMS | {"top_k"}),
    "mistral": WireDialect(
        "Mistral's chat completions API",
        SPEECH_PARAMS | {"top_k"},
        seed_field="random_seed",
        asks_usage=False,
    ),
    "openrouter": WireDialect("OpenRouter's chat completions API", SPEECH_PARAMS),
    GENERIC: WireDialect(
        "an OpenAI-compatible chat completions API", SPEECH_PARAMS, json_schema=False
    ),
}


def dialect_of(dialect: str) -> WireDialect:
    """The named dialect (`ProviderEndpoint.dialect`, else the backend's name): a generic
    server's when it is none of the hosted ones."""
    return DIALECTS.get(dialect) or DIALECTS[GENERIC]


def sampling_fields(
    params: common_pb2.GenerationParams, dialect: WireDialect, provider: str, model: str
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The body's fields for `params` beyond messages and tools, and the parameters left
    out (`InvalidRequest` for one the provider cannot honour, unless dropping is allowed)."""
    dropped = dropped_params(
        params, dialect.unsupported, model, f"provider '{provider}', {dialect.api}"
    )
    fields: dict[str, Any] = {"stream": True}
    if dialect.asks_usage:
        fields["stream_options"] = {"include_usage": True}
    if params.max_tokens:
        fields["max_tokens"] = params.max_tokens
    if params.HasField("temperature"):
        fields["temperature"] = params.temperature
    if params.HasField("top_p"):
        fields["top_p"] = params.top_p
    if params.HasField("top_k") and "top_k" not in dialect.unsupported:
        fields["top_k"] = params.top_k
    if params.HasField("seed"):
        fields[dialect.seed_field] = params.seed
    if params.stop:
        fields["stop"] = list(params.stop)
    if params.response_schema_json:
        fields["response_format"] = response_format(params.response_schema_json, dialect)
    return fields, dropped


def response_format(schema_json: str, dialect: WireDialect) -> dict[str, Any]:
    """The ``response_format`` asking for JSON that follows `schema_json`."""
    schema = _schema(schema_json)
    if not dialect.json_schema:
        return {"type": "json_object", "schema": schema}
    title = schema.get("title")
    name = title if isinstance(title, str) and _SCHEMA_NAME.fullmatch(title) else "response"
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


def _schema(text: str) -> dict[str, Any]:
    try:
        schema = json.loads(text)
    except ValueError as exc:
        raise InvalidRequest(
            f"params.response_schema_json is not JSON: {exc}", field="params.response_schema_json"
        ) from None
    if not isinstance(schema, dict):
        raise InvalidRequest(
            f"params.response_schema_json is a JSON {type(schema).__name__}, not a JSON "
            "Schema object",
            field="params.response_schema_json",
        )
    return schema
