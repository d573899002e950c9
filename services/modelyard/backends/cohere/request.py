"""The Chat v2 request body, and what Cohere cannot take, refused before it is sent.

Cohere's Chat v2 reference (https://docs.cohere.com/v2/reference/chat-stream)
names the request fields: ``model``, ``messages`` (``role`` ``system``,
``user``, ``assistant`` or ``tool``; ``content``), ``max_tokens``,
``temperature``, ``p`` (0.01 to 0.99), ``k`` (0 to 500), ``stop_sequences``
(at most 5), ``seed``, ``response_format`` (``{"type": "json_object",
"json_schema": {...}}``) and ``stream``. What modelyard's `GenerationParams`
and `Input` hold maps onto these one to one, except what Cohere has no field
for: a message's ``name``, a tool choice naming one tool (`tools.tool_fields`),
and an assistant prefill to continue (Chat v2 has no prefix flag). Tools and
tool turns (assistant ``tool_calls`` with their ``tool_plan``, ``tool``
messages by ``tool_call_id``) are as `tools` says. A message's parts are its content array
(``{"type": "text"}`` and ``{"type": "image_url", "image_url": {"url"}}``, the
bytes as a data: URL: docs.cohere.com/docs/image-inputs), at most 20 images a
request (Command A Vision's bound). Each of those is `InvalidRequest`
naming the field and Cohere, before any upstream call, as is a ``p``, ``k``
or stop list outside Cohere's documented bounds. A ``voice`` or an
``audio_format`` (Chat v2 has neither) is refused so too, unless
``params.drop_unsupported_params`` lets it be left out and named in the
answer's ``dropped_params`` (`speech.unsupported_params`, the one rule).
"""

from __future__ import annotations

import json
from typing import Any

from modelyard.backends.cohere.tools import assistant_calls, tool_fields, tool_result
from modelyard.backends.content_parts import image_count, image_url_content
from modelyard.backends.speech.unsupported_params import SPEECH_PARAMS, dropped_params
from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import common_pb2

ROLES = ("system", "user", "assistant", "tool")
# Cohere's documented bounds (Chat v2 reference, request body).
P_RANGE = (0.01, 0.99)
K_RANGE = (0, 500)
MAX_STOP_SEQUENCES = 5
# Command A Vision: "up to 20 images per request" (docs.cohere.com/docs/command-a-vision).
MAX_IMAGES = 20


def chat_body(
    name: str,
    model_input: common_pb2.Input,
    params: common_pb2.GenerationParams,
    *,
    model_id: str,
    provider: str,
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The streamed Chat v2 body for upstream model `name`, and the parameters left out
    as the request allowed (`GenerationParams` field names); `InvalidRequest` for what
    Cohere cannot honour (naming `model_id` and the backend `provider`)."""
    speech = dropped_params(
        params, SPEECH_PARAMS, model_id, f"provider '{provider}', Cohere's Chat v2 API"
    )
    body: dict[str, Any] = {"model": name, "messages": _messages(model_input), "stream": True}
    if params.continue_final_message:
        raise InvalidRequest(
            "params.continue_final_message: Cohere's Chat v2 API cannot continue an "
            "assistant prefill",
            field="params.continue_final_message",
        )
    if params.max_tokens:
        body["max_tokens"] = params.max_tokens
    if params.HasField("temperature"):
        body["temperature"] = params.temperature
    if params.HasField("top_p"):
        # float32 on the wire: 0.99 arrives as 0.99000001, which is still 0.99.
        if not P_RANGE[0] <= round(params.top_p, 6) <= P_RANGE[1]:
            raise _out_of_range("params.top_p", params.top_p, "p", P_RANGE)
        body["p"] = params.top_p
    if params.HasField("top_k"):
        if not K_RANGE[0] <= params.top_k <= K_RANGE[1]:
            raise _out_of_range("params.top_k", params.top_k, "k", K_RANGE)
        body["k"] = params.top_k
    if params.stop:
        if len(params.stop) > MAX_STOP_SEQUENCES:
            raise InvalidRequest(
                f"params.stop: Cohere takes at most {MAX_STOP_SEQUENCES} stop sequences, "
                f"not {len(params.stop)}",
                field="params.stop",
            )
        body["stop_sequences"] = list(params.stop)
    if params.HasField("seed"):
        body["seed"] = params.seed
    if params.response_schema_json:
        body["response_format"] = {
            "type": "json_object",
            "json_schema": _schema(params.response_schema_json),
        }
    tools, dropped = tool_fields(params)
    body.update(tools)
    return body, (*dropped, *speech)  # tool_choice comes before voice in the proto


def _messages(model_input: common_pb2.Input) -> list[dict[str, Any]]:
    kind = model_input.WhichOneof("kind")
    if kind == "text":
        return [{"role": "user", "content": model_input.text}]
    if kind != "chat":
        raise InvalidRequest(
            f"input: Cohere's chat models take text or chat input, not {kind or 'nothing'}",
            field="input",
        )
    messages = []
    for i, m in enumerate(model_input.chat.messages):
        where = f"input.chat.messages[{i}]"
        if m.role not in ROLES:
            raise InvalidRequest(
                f"{where}.role: Cohere takes {', '.join(ROLES)} messages, not '{m.role}'",
                field=f"{where}.role",
            )
        if m.name:
            raise InvalidRequest(
                f"{where}.name: Cohere's chat messages have no name", field=f"{where}.name"
            )
        if m.role == "tool":
            messages.append(tool_result(m, where))
        elif m.tool_calls:
            messages.append(assistant_calls(m, where))
        else:
            messages.append({"role": m.role, "content": image_url_content(m, where)})
    images = image_count(model_input)
    if images > MAX_IMAGES:
        raise InvalidRequest(
            f"input.chat.messages: Cohere takes at most {MAX_IMAGES} images a request, "
            f"not {images}",
            field="input.chat.messages",
        )
    return messages


def _schema(text: str) -> Any:
    try:
        schema = json.loads(text)
    except ValueError as exc:
        raise InvalidRequest(
            f"params.response_schema_json is not JSON ({exc})", field="params.response_schema_json"
        ) from exc
    if not isinstance(schema, dict):
        raise InvalidRequest(
            "params.response_schema_json: Cohere takes a JSON schema object",
            field="params.response_schema_json",
        )
    return schema


def _out_of_range(
    field: str, value: float, cohere_name: str, bounds: tuple[float, float]
) -> InvalidRequest:
    low, high = bounds
    return InvalidRequest(
        f"{field}: Cohere takes {cohere_name} from {low:g} to {high:g}, not {value:g}",
        field=field,
    )
