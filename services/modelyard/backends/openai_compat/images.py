"""Image generation on the OpenAI wire: ``POST <base_url>/images/generations``.

The reference followed: OpenAI's API reference, "Create image", as the
openai-python SDK generates it from OpenAI's OpenAPI spec
(``src/openai/types/image_generate_params.py`` and ``images_response.py``,
read 2026-12-02). The body: ``model``, ``prompt`` (at most 32,000 characters
for gpt-image-1, 4,000 for dall-e-3, 1,000 for dall-e-2), ``n`` (1 to 10; 1
only for dall-e-3; left to its default, 1), ``response_format`` ``b64_json``
for the dall-e models (their default is a URL valid for an hour) and never
for gpt-image models, which refuse it and always answer base64. The answer:
``{"created", "data": [{"b64_json", "revised_prompt"?}], "output_format"?,
"usage"?: {"input_tokens", "output_tokens", ...}}`` (usage: gpt-image models
only, priced per token; a dall-e image is priced per image).

What modelyard's request says, and how it maps:

- the prompt: `Input.text`, or the last ``user`` message of a chat (its
  content, or its text parts joined by spaces); anything else is refused;
- every image comes whole on the last piece, in `Output.images`, with the
  type its bytes say (PNG unless gpt-image's ``output_format`` asked
  otherwise); `Usage.images` counts them; a gpt-image answer's token usage
  is kept as input and output tokens;
- ``params.max_tokens`` is ignored (no tokens are capped: the gateway sends
  one always); every sampling parameter, ``stop``, ``response_schema_json``,
  ``voice``, ``audio_format``, tools and ``continue_final_message`` have no
  counterpart: `InvalidRequest` naming the parameter, or left out and listed
  in ``dropped_params`` with ``params.drop_unsupported_params``
  (`speech.unsupported_params`, the one rule).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncGenerator
from typing import Any

import aiohttp

from modelyard.backends.content_parts import sniff_image_type
from modelyard.backends.engine import Piece
from modelyard.backends.openai_compat.media import MediaCall, token_count, usage_of
from modelyard.backends.openai_compat.upstream import describe
from modelyard.backends.speech.unsupported_params import dropped_params
from modelyard_client.errors import (
    BackendUnavailable,
    ContextLengthExceeded,
    InvalidRequest,
    ProviderProtocolError,
)
from modelyard_client.v1 import common_pb2

ENGINE = "OpenAI image generation"
UNSUPPORTED = (
    "temperature",
    "top_p",
    "top_k",
    "seed",
    "stop",
    "response_schema_json",
    "continue_final_message",
    "tools",
    "tool_choice",
    "voice",
    "audio_format",
)
# The reference's prompt limits, by model family; another name: not checked here.
PROMPT_LIMITS = {"gpt-image-": 32_000, "dall-e-3": 4_000, "dall-e-2": 1_000}
FORMAT_MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


def image_body(name: str, prompt: str) -> dict[str, Any]:
    """The request body for `prompt` on the upstream's model `name`."""
    body: dict[str, Any] = {"model": name, "prompt": prompt}
    if not name.startswith("gpt-image-"):  # gpt-image refuses response_format
        body["response_format"] = "b64_json"
    return body


def prompt_of(model_input: common_pb2.Input, model_id: str) -> tuple[str, str]:
    """The prompt and the input field it comes from: `Input.text`, or the last user
    message of a chat; `InvalidRequest` naming the field for anything else."""
    kind = model_input.WhichOneof("kind")
    if kind == "text":
        text, field = model_input.text, "input.text"
    elif kind == "chat":
        text, field = _last_user_text(model_input.chat, model_id)
    else:
        raise InvalidRequest(
            f"model '{model_id}' makes images from a text prompt (MODALITY_TEXT), "
            f"not from {kind or 'an empty input'}",
            field="input",
        )
    text = text.strip()
    if not text:
        raise InvalidRequest(f"{field} is empty: model '{model_id}' has no prompt", field=field)
    return text, field


def _last_user_text(chat: common_pb2.ChatMessages, model_id: str) -> tuple[str, str]:
    for i in reversed(range(len(chat.messages))):
        message = chat.messages[i]
        if message.role != "user":
            continue
        field = f"input.chat.messages[{i}]"
        if not message.parts:
            return message.content, f"{field}.content"
        for j, part in enumerate(message.parts):
            if part.WhichOneof("part") != "text":
                raise InvalidRequest(
                    f"{field}.parts[{j}] is an image: model '{model_id}' takes a text prompt "
                    "(images/generations; editing an image is another endpoint)",
                    field=f"{field}.parts[{j}]",
                )
        return " ".join(p.text for p in message.parts), f"{field}.parts"
    raise InvalidRequest(
        f"input.chat has no user message: model '{model_id}' draws the last one",
        field="input.chat",
    )


def image_pieces(
    call: MediaCall, model_input: common_pb2.Input, params: common_pb2.GenerationParams
) -> AsyncGenerator[Piece, None]:
    """One image generation, its request checked now (before a slot is taken): its images
    whole on the one (last) piece."""
    prompt, field = prompt_of(model_input, call.model_id)
    limit = next((n for p, n in PROMPT_LIMITS.items() if call.name.startswith(p)), 0)
    if limit and len(prompt) > limit:
        raise ContextLengthExceeded(
            f"{field} has {len(prompt):,} characters: {call.name} takes a prompt of at most "
            f"{limit:,}",
            field=field,
        )
    dropped = dropped_params(params, UNSUPPORTED, call.model_id, ENGINE)
    return _generate(call, image_body(call.name, prompt), dropped)


async def _generate(
    call: MediaCall, body: dict[str, Any], dropped: tuple[str, ...]
) -> AsyncGenerator[Piece, None]:
    async with call.post("/images/generations", json=body) as resp:
        try:
            answer = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as exc:  # nothing was delivered yet
            raise BackendUnavailable(
                f"{call.where} broke off its answer for '{call.model_id}' ({describe(exc)})"
            ) from exc
        except ValueError as exc:
            raise ProviderProtocolError(
                f"{call.where} answered the images of '{call.model_id}' with a body that is "
                "not JSON"
            ) from exc
    images = read_images(answer, call)
    usage = usage_of(answer)
    yield Piece(
        "",
        common_pb2.FINISH_REASON_STOP,
        input_tokens=token_count(usage.get("input_tokens")),
        output_tokens=token_count(usage.get("output_tokens")),
        output=common_pb2.Output(images=images),
        images=len(images),
        dropped_params=dropped,
    )


def read_images(answer: Any, call: MediaCall) -> list[common_pb2.Image]:
    """The images of an answer, decoded; `ProviderProtocolError` for one that holds none or
    something other than base64 (a URL: the request asked for base64)."""

    def wrong(problem: str) -> ProviderProtocolError:
        return ProviderProtocolError(
            f"{call.where} answered the images of '{call.model_id}' with {problem}"
        )

    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, list) or not data:
        raise wrong("no images (no data list)")
    fallback = FORMAT_MIME.get(str(answer.get("output_format") or "png"), "image/png")
    images = []
    for i, item in enumerate(data):
        encoded = item.get("b64_json") if isinstance(item, dict) else None
        if not isinstance(encoded, str) or not encoded:
            raise wrong(f"data[{i}] without b64_json")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise wrong(f"data[{i}].b64_json that is not base64") from None
        images.append(common_pb2.Image(data=raw, mime_type=sniff_image_type(raw) or fallback))
    return images
