"""Task analysis: documented rules, and the caller's explicit fields win."""

from __future__ import annotations

import pytest

from modelyard.selector.task_analysis import analyse
from modelyard_client.v1 import common_pb2, selector_pb2

C = common_pb2
S = selector_pb2


def _chat(*contents: str) -> C.Input:
    model_input = C.Input()
    for content in contents:
        model_input.chat.messages.add(role="user", content=content)
    return model_input


@pytest.mark.parametrize(
    ("model_input", "task_type", "modality", "caps"),
    [
        (
            C.Input(text="Once upon a time"),
            S.TASK_TYPE_COMPLETION,
            C.MODALITY_TEXT,
            [C.CAPABILITY_TEXT_GENERATION],
        ),
        (_chat("Hello there"), S.TASK_TYPE_CHAT, C.MODALITY_TEXT, [C.CAPABILITY_CHAT]),
        (
            _chat("Fix this:\n```py\nprint(1\n```"),
            S.TASK_TYPE_CODE,
            C.MODALITY_TEXT,
            [C.CAPABILITY_CHAT],
        ),
        (
            C.Input(text="def add(a, b):"),
            S.TASK_TYPE_CODE,
            C.MODALITY_TEXT,
            [C.CAPABILITY_TEXT_GENERATION],
        ),
        (
            _chat("Please summarize this article"),
            S.TASK_TYPE_SUMMARIZATION,
            C.MODALITY_TEXT,
            [C.CAPABILITY_CHAT],
        ),
        (
            C.Input(image=C.Image(data=b"\x89PNG")),  # a bare image: a classifier's input
            S.TASK_TYPE_CLASSIFICATION,
            C.MODALITY_IMAGE,
            [C.CAPABILITY_IMAGE_CLASSIFICATION],
        ),
        (
            C.Input(
                chat=C.ChatMessages(
                    messages=[
                        C.ChatMessage(
                            role="user",
                            parts=[
                                C.ContentPart(text="What is in this picture?"),
                                C.ContentPart(image=C.Image(data=b"\x89PNG")),
                            ],
                        )
                    ]
                )
            ),
            S.TASK_TYPE_CHAT,
            C.MODALITY_TEXT,
            [C.CAPABILITY_CHAT, C.CAPABILITY_VISION],  # an image part needs a vision model
        ),
        (
            C.Input(audio=C.Audio(data=b"RIFF")),
            S.TASK_TYPE_SPEECH_TO_TEXT,
            C.MODALITY_AUDIO,
            [C.CAPABILITY_SPEECH_TO_TEXT],
        ),
    ],
)
def test_rules(model_input: C.Input, task_type: int, modality: int, caps: list[int]) -> None:
    task = analyse(S.Task(), model_input, C.GenerationParams(max_tokens=50))
    assert task.type == task_type
    assert task.input_modality == modality
    assert list(task.required_capabilities) == caps
    assert task.estimated_input_tokens >= 1
    assert task.max_output_tokens == 50


def test_json_schema_requires_json_output() -> None:
    params = C.GenerationParams(response_schema_json='{"type": "object"}')
    task = analyse(S.Task(), C.Input(text="List three colours"), params)
    assert C.CAPABILITY_JSON_OUTPUT in task.required_capabilities


def test_size_is_four_bytes_per_token() -> None:
    task = analyse(S.Task(), C.Input(text="x" * 4000), C.GenerationParams())
    assert 1000 <= task.estimated_input_tokens <= 1002


def test_explicit_fields_win() -> None:
    explicit = S.Task(
        type=S.TASK_TYPE_EMBEDDING,
        input_modality=C.MODALITY_STRUCTURED,
        required_capabilities=[C.CAPABILITY_EMBEDDING],
        estimated_input_tokens=7,
        max_output_tokens=3,
    )
    task = analyse(explicit, _chat("```code```"), C.GenerationParams(max_tokens=99))
    assert task == explicit


def test_a_named_vision_task_on_a_bare_image_keeps_vision() -> None:
    task = analyse(
        S.Task(type=S.TASK_TYPE_VISION),
        C.Input(image=C.Image(data=b"\x89PNG")),
        C.GenerationParams(),
    )
    assert list(task.required_capabilities) == [C.CAPABILITY_VISION]


def test_code_in_a_text_part_makes_a_code_task() -> None:
    message = C.ChatMessage(role="user", parts=[C.ContentPart(text="def f(x): return x")])
    task = analyse(S.Task(), C.Input(chat=C.ChatMessages(messages=[message])), C.GenerationParams())
    assert task.type == S.TASK_TYPE_CODE
