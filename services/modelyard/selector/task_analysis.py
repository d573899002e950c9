"""Deriving what a request needs when the caller does not say.

Simple, documented rules; every field the caller set explicitly wins.

- modality: from the input kind (text and chat are text).
- task type: image or tensors → classification (a bare image is a classifier's
  input: a vision model takes its images inside a chat), audio → speech to
  text, text or chat with a `voice` or `audio_format` parameter
  (only speech has them) → text to speech, code fences or code keywords →
  code, "summarize"/"tl;dr" → summarization, chat input → chat, else
  completion.
- required capabilities: text to speech for a text-to-speech task (given or
  derived: its text is spoken, not answered), else chat for chat input, text
  generation for text input, with vision too when a chat message has an image
  part; image classification for an image (vision when the caller names the
  vision task), speech to text for audio,
  JSON output when the generation parameters carry a response schema (the
  gateway passes its request's; a Select call has none).
- size: input tokens estimated at four bytes per token.

Modality and size are `modelyard.model_input`'s rules, the ones the gateway
checks and reserves budget with.

A task's enum fields must hold known values (INVALID_ARGUMENT naming the field
otherwise): this is the one boundary both `Select` and the gateway's requests
without a model cross, and masks are built from these values.
"""

from __future__ import annotations

import re

from modelyard.enum_values import check_all_known, check_known
from modelyard.model_input import estimate_input_tokens, input_modality
from modelyard_client.v1 import common_pb2, selector_pb2

_CODE = re.compile(
    r"```|\bdef \w+\(|\bfunction \w*\(|\bclass \w+[:({]|#include\s*<|\bSELECT\b.+\bFROM\b"
    r"|\bimport \w+|=>|\bfn \w+\(",
    re.IGNORECASE | re.DOTALL,
)
_SUMMARY = re.compile(r"\b(summari[sz]e|summary|tl;?dr)\b", re.IGNORECASE)


def _text_of(model_input: common_pb2.Input) -> str:
    kind = model_input.WhichOneof("kind")
    if kind == "text":
        return model_input.text
    if kind == "chat":
        return "\n".join(
            m.content or "\n".join(p.text for p in m.parts) for m in model_input.chat.messages
        )
    return ""


def analyse(
    task: selector_pb2.Task, model_input: common_pb2.Input, params: common_pb2.GenerationParams
) -> selector_pb2.Task:
    """`task` with every unset field derived from the input and parameters."""
    check_task_enums(task)
    out = selector_pb2.Task()
    out.CopyFrom(task)
    kind = model_input.WhichOneof("kind")
    text = _text_of(model_input)
    if out.input_modality == common_pb2.MODALITY_UNSPECIFIED:
        out.input_modality = input_modality(model_input)
    if out.type == selector_pb2.TASK_TYPE_UNSPECIFIED:
        out.type = _task_type(kind, text, params)
    if not out.required_capabilities:
        out.required_capabilities.extend(_capabilities(model_input, out.type, params))
    if not out.estimated_input_tokens:
        out.estimated_input_tokens = estimate_input_tokens(model_input)
    if not out.max_output_tokens and params.max_tokens > 0:
        out.max_output_tokens = params.max_tokens
    return out


def check_task_enums(task: selector_pb2.Task) -> None:
    """`InvalidRequest` naming the first of the task's enum fields holding an unknown value."""
    check_known(selector_pb2.TaskType.DESCRIPTOR, task.type, "task.type")
    check_known(common_pb2.Modality.DESCRIPTOR, task.input_modality, "task.input_modality")
    check_all_known(
        common_pb2.Capability.DESCRIPTOR, task.required_capabilities, "task.required_capabilities"
    )


def _task_type(
    kind: str | None, text: str, params: common_pb2.GenerationParams
) -> selector_pb2.TaskType.ValueType:
    if kind in ("image", "tensors"):
        return selector_pb2.TASK_TYPE_CLASSIFICATION
    if kind == "audio":
        return selector_pb2.TASK_TYPE_SPEECH_TO_TEXT
    if kind in ("text", "chat") and (params.voice or params.audio_format):
        return selector_pb2.TASK_TYPE_TEXT_TO_SPEECH
    if _CODE.search(text):
        return selector_pb2.TASK_TYPE_CODE
    if _SUMMARY.search(text):
        return selector_pb2.TASK_TYPE_SUMMARIZATION
    if kind == "chat":
        return selector_pb2.TASK_TYPE_CHAT
    return selector_pb2.TASK_TYPE_COMPLETION


def _capabilities(
    model_input: common_pb2.Input,
    task_type: selector_pb2.TaskType.ValueType,
    params: common_pb2.GenerationParams,
) -> list[common_pb2.Capability.ValueType]:
    kind = model_input.WhichOneof("kind")
    caps: list[common_pb2.Capability.ValueType] = []
    if task_type == selector_pb2.TASK_TYPE_TEXT_TO_SPEECH:
        caps.append(common_pb2.CAPABILITY_TEXT_TO_SPEECH)
    elif kind == "chat":
        caps.append(common_pb2.CAPABILITY_CHAT)
        if any(p.HasField("image") for m in model_input.chat.messages for p in m.parts):
            caps.append(common_pb2.CAPABILITY_VISION)  # the gateway refuses it to others
    elif kind == "text":
        caps.append(common_pb2.CAPABILITY_TEXT_GENERATION)
    elif kind == "image" and task_type == selector_pb2.TASK_TYPE_CLASSIFICATION:
        caps.append(common_pb2.CAPABILITY_IMAGE_CLASSIFICATION)  # a classifier, not a chat
    elif kind == "image":
        caps.append(common_pb2.CAPABILITY_VISION)
    elif kind == "audio":
        caps.append(common_pb2.CAPABILITY_SPEECH_TO_TEXT)
    if params.response_schema_json:
        caps.append(common_pb2.CAPABILITY_JSON_OUTPUT)
    if params.tools and params.tool_choice != "none":
        caps.append(common_pb2.CAPABILITY_TOOLS)
    return caps
