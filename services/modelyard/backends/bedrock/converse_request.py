"""The body of a Converse / ConverseStream request, from modelyard's input and params.

Per the Bedrock Runtime API reference (API version 2023-09-30,
https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html):
``messages`` ``[{role, content: [{text}]}]`` with roles user and assistant,
``system`` ``[{text}]``, ``inferenceConfig`` ``{maxTokens, temperature, topP,
stopSequences}`` (temperature and topP in [0, 1]), and ``outputConfig.textFormat``
for a JSON schema the answer must follow (``{type: json_schema, structure:
{jsonSchema: {schema}}}``, the schema as a JSON string).

Tools (``toolConfig``) and tool turns (``toolUse`` and ``toolResult`` blocks):
`converse_tools`.

What Converse cannot take is refused here, before any call, naming the
parameter: a ``name`` on a chat message, a role other than
system/user/assistant/tool, an empty message (an assistant message with calls
may have no text). ``seed``, ``voice`` and ``audio_format`` (Converse has none
of them) and ``top_k`` on a model family whose documented request fields have
no top-k are refused so too, unless ``params.drop_unsupported_params`` lets
them be left out and named in the answer's ``dropped_params``
(`speech.unsupported_params`, the one rule). ``top_k`` goes in
``additionalModelRequestFields`` where the model's parameters page documents it:
Anthropic Claude's ``top_k``
(https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-anthropic-claude-messages.html)
and Amazon Nova's ``inferenceConfig.topK``
(https://docs.aws.amazon.com/nova/latest/userguide/using-converse-api.html).

A message's image parts are ``ImageBlock`` content blocks in their place
(``{"image": {"format": "png" | "jpeg" | "gif" | "webp", "source": {"bytes":
<base64>}}}``, API reference ``ImageBlock``/``ImageSource``); an https URL is
refused naming the field (Converse reads only bytes or an S3 location).

Consecutive messages of one role become one message of several blocks,
as Converse expects turns to alternate; system messages, wherever they are,
go to ``system`` in order. A trailing assistant message is sent as it is: the
model continues it (a prefill), which `continue_final_message` asks for.
"""

from __future__ import annotations

import json
import re
from typing import Any, NamedTuple

from modelyard.backends.bedrock.converse_tools import (
    dropped_tool_choice,
    tool_config,
    tool_result_block,
    tool_use_blocks,
)
from modelyard.backends.content_parts import ContentItem, message_items
from modelyard.backends.engine import text_content
from modelyard.backends.speech.unsupported_params import SPEECH_PARAMS, dropped_params
from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import common_pb2

# Model ids (bare, cross-region inference profiles ``us.``/``eu.``/``global.``..., ARNs).
_ANTHROPIC = re.compile(r"(?:^|[./])anthropic\.")
_NOVA = re.compile(r"(?:^|[./])amazon\.nova-")
_WHERE = "provider bedrock, Bedrock's Converse API"
# GenerationParams Converse has no field for, whatever the model.
UNSUPPORTED_PARAMS = SPEECH_PARAMS | {"seed"}
_FIELD_ORDER = {f.name: f.number for f in common_pb2.GenerationParams.DESCRIPTOR.fields}


class ConverseRequest(NamedTuple):
    """A call's JSON body, and the parameters left out of it (``drop_unsupported_params``)."""

    body: dict[str, Any]
    dropped: tuple[str, ...]


def converse_body(
    model: str, model_input: common_pb2.Input, params: common_pb2.GenerationParams
) -> ConverseRequest:
    """The request for `model` (the Bedrock model id); `InvalidRequest` for what Converse
    or the model cannot honour."""
    system, messages = _turns(model_input)
    if params.continue_final_message and (not messages or messages[-1]["role"] != "assistant"):
        raise InvalidRequest(
            "params.continue_final_message is set but the input does not end with an "
            "assistant message to continue",
            field="params.continue_final_message",
        )
    body: dict[str, Any] = {"messages": messages}
    if system:
        body["system"] = system
    inference = _inference_config(params)
    if inference:
        body["inferenceConfig"] = inference
    top_k = _top_k_fields(model, params) if params.HasField("top_k") else None
    if top_k is not None:
        body["additionalModelRequestFields"] = top_k
    dropped = dropped_params(
        params, UNSUPPORTED_PARAMS | ({"top_k"} if top_k is None else set()), model, _WHERE
    )
    if params.response_schema_json:
        body["outputConfig"] = {"textFormat": _json_schema_format(params.response_schema_json)}
    choice = dropped_tool_choice(model, model_input, params)
    tools = tool_config(model_input, params, choice)
    if tools is not None:
        body["toolConfig"] = tools
    return ConverseRequest(body, tuple(sorted((*dropped, *choice), key=_FIELD_ORDER.__getitem__)))


def _turns(model_input: common_pb2.Input) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    """(system blocks, alternating user/assistant messages) of the input."""
    kind = model_input.WhichOneof("kind")
    if kind == "text":
        if not model_input.text:
            raise InvalidRequest("input.text is empty", field="input.text")
        return [], [{"role": "user", "content": [{"text": model_input.text}]}]
    if kind != "chat":
        raise InvalidRequest(
            f"Bedrock's Converse API takes text or chat input here, not {kind or 'nothing'} "
            "(provider bedrock)",
            field="input",
        )
    system: list[dict[str, str]] = []
    messages: list[dict[str, Any]] = []
    chat = model_input.chat.messages
    for i, m in enumerate(chat):
        where = f"input.chat.messages[{i}]"
        if m.name:
            raise InvalidRequest(
                f"{where}.name: Bedrock's Converse API takes no participant name "
                "(provider bedrock)",
                field=f"{where}.name",
            )
        if not m.content and not m.parts and not m.tool_calls:
            raise InvalidRequest(
                f"{where}.content is empty: Bedrock's Converse API refuses a blank text block",
                field=f"{where}.content",
            )
        if m.role == "system":
            system.append({"text": text_content(m, where)})
        elif m.role in ("user", "assistant", "tool"):
            if m.role == "tool":
                role, blocks = "user", [tool_result_block(chat, i, text_content(m, where))]
            else:
                role = m.role
                blocks = [_block(item) for item in message_items(m, where)]
                blocks += tool_use_blocks(m, where)
            if messages and messages[-1]["role"] == role:
                messages[-1]["content"].extend(blocks)
            else:
                messages.append({"role": role, "content": blocks})
        else:
            raise InvalidRequest(
                f"{where}.role is '{m.role}': Bedrock's Converse API takes system, user, "
                "assistant and tool messages here (provider bedrock)",
                field=f"{where}.role",
            )
    if not messages:
        raise InvalidRequest(
            "input.chat has no user or assistant message: Converse needs at least one",
            field="input.chat.messages",
        )
    return system, messages


def _block(item: ContentItem) -> dict[str, Any]:
    """A ``ContentBlock``: ``{text}``, or an ``ImageBlock`` ``{image: {format, source:
    {bytes}}}`` (format png | jpeg | gif | webp; the bytes base64 in the JSON body).
    Converse reads images from bytes or S3 only, so an https URL is refused."""
    if isinstance(item, str):
        return {"text": item}
    item.refuse_url("Bedrock's Converse API (provider bedrock)", " (it reads bytes or S3 objects)")
    image_format = item.mime_type.removeprefix("image/")
    return {"image": {"format": image_format, "source": {"bytes": item.base64()}}}


def _inference_config(params: common_pb2.GenerationParams) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if params.max_tokens:
        config["maxTokens"] = params.max_tokens
    if params.HasField("temperature"):
        config["temperature"] = _unit_interval("temperature", params.temperature, "temperature")
    if params.HasField("top_p"):
        config["topP"] = _unit_interval("top_p", params.top_p, "topP")
    if params.stop:
        config["stopSequences"] = list(params.stop)
    return config


def _unit_interval(field: str, value: float, key: str) -> float:
    if not 0 <= value <= 1:
        raise InvalidRequest(
            f"params.{field} is {value:g}: Bedrock's Converse API takes {key} between 0 and 1 "
            "(provider bedrock)",
            field=f"params.{field}",
        )
    return value


def _top_k_fields(model: str, params: common_pb2.GenerationParams) -> dict[str, Any] | None:
    """``additionalModelRequestFields`` carrying top-k as the model family documents it;
    None for a family that documents none, when the request lets top_k be dropped."""
    top_k = params.top_k
    if top_k < 0:
        raise InvalidRequest(f"params.top_k is {top_k}: must be >= 0", field="params.top_k")
    if _ANTHROPIC.search(model):
        return {"top_k": top_k}
    if _NOVA.search(model):
        return {"inferenceConfig": {"topK": top_k}}
    if params.drop_unsupported_params:
        return None
    raise InvalidRequest(
        f"params.top_k: Bedrock model '{model}' documents no top-k request field "
        "(provider bedrock; it is known for Anthropic Claude and Amazon Nova models)",
        field="params.top_k",
    )


def _json_schema_format(schema_json: str) -> dict[str, Any]:
    try:
        schema = json.loads(schema_json)
    except ValueError as exc:
        raise InvalidRequest(
            f"params.response_schema_json is not JSON: {exc}", field="params.response_schema_json"
        ) from exc
    if not isinstance(schema, dict):
        raise InvalidRequest(
            "params.response_schema_json must be a JSON schema object",
            field="params.response_schema_json",
        )
    return {"type": "json_schema", "structure": {"jsonSchema": {"schema": schema_json}}}
