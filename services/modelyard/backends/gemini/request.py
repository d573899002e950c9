"""The body of a ``generateContent`` / ``streamGenerateContent`` call, from modelyard's input.

The same body on the Gemini API (AI Studio) and on Vertex AI: the API
references' ``GenerateContentRequest``
(https://ai.google.dev/api/generate-content#request-body and
https://cloud.google.com/vertex-ai/generative-ai/docs/reference/rest/v1/GenerateContentRequest).

- ``contents``: the turns, ``{"role": "user" | "model", "parts": [{"text"}]}``;
  text input is one user turn, a chat's assistant messages are ``model`` turns;
  a message's image parts are ``{"inlineData": {"mimeType", "data"}}`` parts in
  their place (base64 bytes; an https URL or a GIF is refused naming the field).
- ``systemInstruction``: the chat's system messages, one part each, in order
  (Gemini takes one system instruction, not system turns between the others).
- ``tools`` and ``toolConfig``, an assistant message's calls as ``functionCall``
  parts and "tool" messages as ``functionResponse`` parts: `tools` says how.
- ``generationConfig``: ``maxOutputTokens``, ``temperature``, ``topP``,
  ``topK``, ``stopSequences`` (at most 5, the reference says), ``seed`` (an
  int32), and for ``response_schema_json`` ``responseMimeType:
  application/json`` with ``responseJsonSchema``, which takes a JSON Schema as
  it is (``responseSchema`` takes only the OpenAPI subset, so a schema would
  have to be translated and could lose keywords).

What Gemini cannot honour is refused here, before any call, naming the
parameter and the provider: a message ``name`` (Gemini turns have none), a
role other than system/user/assistant/tool, a chat of system messages only, a
prefill to continue (``continue_final_message``: Gemini has no documented way
to continue a trailing model turn), more than 5 stop sequences, a seed
outside int32, a response schema that is not a JSON object. A ``voice`` or an
``audio_format`` (``generateContent`` has neither) is refused so too, unless
``params.drop_unsupported_params`` lets it be left out and named in the
answer's ``dropped_params`` (`speech.unsupported_params`, the one rule).
"""

from __future__ import annotations

import json
from typing import Any

from modelyard.backends.content_parts import ContentItem, message_items
from modelyard.backends.engine import text_content
from modelyard.backends.gemini.tools import (
    function_call_parts,
    function_response_part,
    tool_fields,
)
from modelyard.backends.speech.unsupported_params import SPEECH_PARAMS, dropped_params
from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import common_pb2

MAX_STOP_SEQUENCES = 5  # GenerationConfig.stopSequences: "up to 5 character sequences"
_INT32 = 2**31
_ROLES = {"user": "user", "assistant": "model"}
# Image understanding's supported types (ai.google.dev/gemini-api/docs/image-understanding):
# PNG, JPEG, WEBP, HEIC, HEIF; of the gateway's four, GIF is not one.
GEMINI_IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp")


def request_body(
    provider: str,
    model_input: common_pb2.Input,
    params: common_pb2.GenerationParams,
    model_id: str,
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The JSON body for `provider` (the backend's name, for the errors) calling `model_id`,
    and the parameters left out of it (``drop_unsupported_params``)."""
    where = f"the '{provider}' backend (Gemini)"
    dropped = dropped_params(params, SPEECH_PARAMS, model_id, f"provider '{provider}', Gemini")
    body: dict[str, Any] = {}
    kind = model_input.WhichOneof("kind")
    if kind == "text":
        body["contents"] = [_turn("user", model_input.text)]
    elif kind == "chat":
        system, contents = _chat(model_input.chat, where)
        body["contents"] = contents
        if system:
            body["systemInstruction"] = {"parts": [{"text": t} for t in system]}
    else:
        raise InvalidRequest(
            f"{where} takes text or chat input, not {kind or 'nothing'}", field="input"
        )
    if params.continue_final_message:
        raise InvalidRequest(
            f"{where} cannot continue an assistant prefill: Gemini has no documented way to "
            "continue a trailing model turn (do not declare assistant_prefill for its models)",
            field="params.continue_final_message",
        )
    body.update(tool_fields(params))
    config = _generation_config(params, where)
    if config:
        body["generationConfig"] = config
    return body, dropped


def _turn(role: str, text: str) -> dict[str, Any]:
    return {"role": role, "parts": [{"text": text}]}


def _chat(chat: common_pb2.ChatMessages, where: str) -> tuple[list[str], list[dict[str, Any]]]:
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    messages = chat.messages
    for i, message in enumerate(messages):
        field = f"input.chat.messages[{i}]"
        if message.name:
            raise InvalidRequest(
                f"{where} takes no message name: Gemini turns have none ({field}.name)",
                field=f"{field}.name",
            )
        if message.role == "system":
            system.append(text_content(message, field))
        elif message.role == "tool":
            part = function_response_part(messages, i, where)
            if contents and i > 0 and messages[i - 1].role == "tool":
                contents[-1]["parts"].append(part)  # results of one turn's calls together
            else:
                contents.append({"role": "user", "parts": [part]})
        elif message.role in _ROLES:
            parts = [_part(item, where) for item in message_items(message, field)]
            parts += function_call_parts(message, field)
            contents.append({"role": _ROLES[message.role], "parts": parts or [{"text": ""}]})
        else:
            raise InvalidRequest(
                f"{where} takes system, user, assistant and tool messages, not role "
                f"{message.role!r} ({field}.role)",
                field=f"{field}.role",
            )
    if not contents:
        raise InvalidRequest(
            f"{where} needs at least one user or assistant message besides the system ones",
            field="input.chat.messages",
        )
    return system, contents


def _part(item: ContentItem, where: str) -> dict[str, Any]:
    """A text part, or an image as ``inlineData`` (``Blob``: ``mimeType`` and base64
    ``data``); Gemini takes PNG, JPEG, WebP (and HEIC/HEIF), not GIF, and an image URL
    only as a Files API or Cloud Storage ``fileData`` URI, so an https URL is refused."""
    if isinstance(item, str):
        return {"text": item}
    item.refuse_url(where, " (its fileData takes Files API and Cloud Storage URIs only)")
    if item.mime_type not in GEMINI_IMAGE_TYPES:
        raise InvalidRequest(
            f"{item.field}.data: {where} takes PNG, JPEG and WebP images, not {item.mime_type}",
            field=f"{item.field}.data",
        )
    return {"inlineData": {"mimeType": item.mime_type, "data": item.base64()}}


def _generation_config(params: common_pb2.GenerationParams, where: str) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if params.max_tokens:
        config["maxOutputTokens"] = params.max_tokens
    if params.HasField("temperature"):
        config["temperature"] = params.temperature
    if params.HasField("top_p"):
        config["topP"] = params.top_p
    if params.HasField("top_k"):
        config["topK"] = params.top_k
    if params.stop:
        if len(params.stop) > MAX_STOP_SEQUENCES:
            raise InvalidRequest(
                f"{where} takes at most {MAX_STOP_SEQUENCES} stop sequences, not "
                f"{len(params.stop)} (params.stop)",
                field="params.stop",
            )
        config["stopSequences"] = list(params.stop)
    if params.HasField("seed"):
        if not -_INT32 <= params.seed < _INT32:
            raise InvalidRequest(
                f"{where} takes a 32-bit seed; {params.seed} is out of range (params.seed)",
                field="params.seed",
            )
        config["seed"] = params.seed
    if params.response_schema_json:
        config["responseMimeType"] = "application/json"
        config["responseJsonSchema"] = _schema(params.response_schema_json, where)
    return config


def _schema(text: str, where: str) -> dict[str, Any]:
    try:
        schema = json.loads(text)
    except ValueError as exc:
        raise InvalidRequest(
            f"{where}: params.response_schema_json is not JSON ({exc})",
            field="params.response_schema_json",
        ) from None
    if not isinstance(schema, dict):
        raise InvalidRequest(
            f"{where}: params.response_schema_json must be a JSON Schema object, not a JSON "
            f"{type(schema).__name__}",
            field="params.response_schema_json",
        )
    return schema
