"""The body of a Messages API call, built from a modelyard `Input` and `GenerationParams`.

Anthropic's Messages API (https://docs.anthropic.com/en/api/messages,
``anthropic-version: 2023-06-01``) differs from OpenAI's chat completions in
ways that matter here:

- the system prompt is the top-level ``system`` field, not a message: every
  ``system`` message of the chat, in order, joined by a blank line;
- ``messages`` alternate ``user`` and ``assistant``: consecutive messages of
  one role become one turn with a text block each, so nothing is rewritten;
- a chat that ends with an ``assistant`` message is a prefill the model
  continues, streaming only what follows (`continue_final_message` asks for
  exactly that). The API refuses a final assistant text that ends in
  whitespace, so that text is sent right-trimmed;
- ``max_tokens`` is required (the gateway always sets it), ``temperature``
  runs 0 to 1, there is no ``seed``, and a JSON schema goes in
  ``output_config.format`` (structured outputs);
- every text block must hold more than whitespace, but the final assistant
  turn's, which is then left out;
- tools, the tool choice and tool turns (``tool_use`` and ``tool_result``
  blocks) as `tools` says;
- a message's parts become its blocks in order: a text block each, an image
  block each (``{"type": "image", "source": {"type": "base64", "media_type",
  "data"}}`` for bytes, ``{"type": "url", "url"}`` for an https URL the API
  fetches; the Messages API reference's ``ImageBlockParam``, 2025). The API
  takes JPEG, PNG, GIF and WebP, what the gateway lets through.

What the API cannot take is refused here with `InvalidRequest` naming the
field and the provider, before anything is sent: a message ``name``, tool
turns out of the order the API takes (`tools.check_tool_turns`), an input that
is neither text nor chat. A ``seed``, a ``voice`` or an ``audio_format`` (the
API has none) is refused so too, unless ``params.drop_unsupported_params``
lets it be left out and named in the answer's ``dropped_params``
(`speech.unsupported_params`, the one rule).
"""

from __future__ import annotations

import json
from typing import Any

from modelyard.backends.anthropic.tools import (
    check_tool_turns,
    tool_fields,
    tool_result_block,
    tool_use_blocks,
)
from modelyard.backends.content_parts import ChatImage, message_items
from modelyard.backends.engine import text_content
from modelyard.backends.speech.unsupported_params import SPEECH_PARAMS, dropped_params
from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import common_pb2

API = "Anthropic's Messages API"
TEMPERATURE_MAX = 1.0  # the API's range is 0 to 1, OpenAI's 0 to 2
# GenerationParams the Messages API has no field for.
UNSUPPORTED_PARAMS = SPEECH_PARAMS | {"seed"}


def messages_body(
    name: str,
    model_input: common_pb2.Input,
    params: common_pb2.GenerationParams,
    *,
    model_id: str,
    provider: str,
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The JSON body that streams `model_input` from model `name`, and the parameters left
    out of it; `InvalidRequest` for what the API cannot take (naming `model_id` and the
    backend `provider` for a parameter it has no field for)."""
    dropped = dropped_params(params, UNSUPPORTED_PARAMS, model_id, f"provider '{provider}', {API}")
    system, turns = _turns(model_input)
    if params.continue_final_message and (not turns or turns[-1]["role"] != "assistant"):
        raise InvalidRequest(
            "params.continue_final_message is set but the input does not end with an "
            "assistant message to continue",
            field="params.continue_final_message",
        )
    if params.max_tokens <= 0:
        raise InvalidRequest(
            f"params.max_tokens: {API} requires max_tokens (a count above 0)",
            field="params.max_tokens",
        )
    body: dict[str, Any] = {
        "model": name,
        "max_tokens": params.max_tokens,
        "messages": turns,
        "stream": True,
    }
    if system:
        body["system"] = system
    if params.HasField("temperature"):
        if not 0.0 <= params.temperature <= TEMPERATURE_MAX:
            raise InvalidRequest(
                f"params.temperature: {API} takes 0 to {TEMPERATURE_MAX:g}, "
                f"not {params.temperature:g}",
                field="params.temperature",
            )
        body["temperature"] = params.temperature
    if params.HasField("top_p"):
        body["top_p"] = params.top_p
    if params.HasField("top_k"):
        body["top_k"] = params.top_k
    if params.stop:
        body["stop_sequences"] = list(params.stop)
    if params.response_schema_json:
        body["output_config"] = {"format": {"type": "json_schema", "schema": _schema(params)}}
    body.update(tool_fields(params))
    return body, dropped


def _turns(model_input: common_pb2.Input) -> tuple[str, list[dict[str, Any]]]:
    """The system prompt and the alternating turns of the input."""
    kind = model_input.WhichOneof("kind")
    if kind == "text":
        _check_text(model_input.text, "input.text")
        return "", [_turn("user", model_input.text)]
    if kind != "chat":
        raise InvalidRequest(
            f"input: {API} takes text or chat input, not {kind or 'nothing'}", field="input"
        )
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    sources: list[str] = []  # each turn's first message
    messages = model_input.chat.messages
    for i, message in enumerate(messages):
        where = f"input.chat.messages[{i}]"
        if message.name:
            raise InvalidRequest(f"{where}.name: {API} takes no message names", field=where)
        if message.role == "system":
            text = text_content(message, where)
            if text.strip():
                system.append(text)
            continue
        if message.role not in ("user", "assistant", "tool"):
            raise InvalidRequest(
                f"{where}.role: {API} takes system, user, assistant and tool messages, "
                f"not '{message.role}'",
                field=f"{where}.role",
            )
        role = "user" if message.role == "tool" else message.role
        if message.role == "tool":
            blocks = [tool_result_block(message, where)]
        elif message.tool_calls and not message.content and not message.parts:
            blocks = tool_use_blocks(message, where)  # calls without text
        else:
            blocks = _blocks(message, where, last=i == len(messages) - 1)
            blocks += tool_use_blocks(message, where)
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
            sources.append(where)
    check_tool_turns(turns, sources)
    if turns and turns[-1]["role"] == "assistant":
        _trim_prefill(turns)
    if not turns:
        raise InvalidRequest(
            f"input.chat: {API} needs at least one user message", field="input.chat"
        )
    return "\n\n".join(system), turns


def _blocks(message: common_pb2.ChatMessage, where: str, *, last: bool) -> list[dict[str, Any]]:
    """The message's content blocks: a text block each for `content` or a text part, an
    image block for an image part (a final assistant message's text may be blank)."""
    if not message.parts:
        if not last or message.role != "assistant":
            _check_text(message.content, f"{where}.content")
        return [_block(message.content)]
    blocks = []
    for j, item in enumerate(message_items(message, where)):
        if isinstance(item, str):
            if not last or message.role != "assistant":
                _check_text(item, f"{where}.parts[{j}].text")
            blocks.append(_block(item))
        else:
            blocks.append(_image_block(item))
    return blocks


def _image_block(image: ChatImage) -> dict[str, Any]:
    """An image content block (Messages API reference, ``ImageBlockParam``): the bytes as a
    ``base64`` source with their ``media_type``, or a ``url`` source the API fetches."""
    if image.url:
        return {"type": "image", "source": {"type": "url", "url": image.url}}
    source = {"type": "base64", "media_type": image.mime_type, "data": image.base64()}
    return {"type": "image", "source": source}


def _trim_prefill(turns: list[dict[str, Any]]) -> None:
    """Right-trim the final assistant text (the API refuses trailing whitespace there);
    a final assistant turn left with no text is left out."""
    blocks = turns[-1]["content"]
    if blocks[-1].get("type") != "text":
        return
    blocks[-1]["text"] = blocks[-1]["text"].rstrip()
    if not blocks[-1]["text"]:
        blocks.pop()
    if not blocks:
        turns.pop()


def _turn(role: str, text: str) -> dict[str, Any]:
    return {"role": role, "content": [_block(text)]}


def _block(text: str) -> dict[str, str]:
    return {"type": "text", "text": text}


def _check_text(text: str, where: str) -> None:
    if not text.strip():
        raise InvalidRequest(
            f"{where}: {API} needs text that is not empty or only whitespace", field=where
        )


def _schema(params: common_pb2.GenerationParams) -> dict[str, Any]:
    try:
        schema = json.loads(params.response_schema_json)
    except ValueError as exc:
        raise InvalidRequest(
            f"params.response_schema_json is not JSON: {exc}", field="params.response_schema_json"
        ) from None
    if not isinstance(schema, dict):
        raise InvalidRequest(
            "params.response_schema_json must be a JSON schema object",
            field="params.response_schema_json",
        )
    return schema
