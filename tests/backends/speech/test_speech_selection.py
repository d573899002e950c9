"""Task analysis for speech: which requests with no model are text to speech, and what they
require (the selector's rules, `modelyard.selector.task_analysis`)."""

from __future__ import annotations

import pytest

from modelyard.selector.task_analysis import analyse
from modelyard_client.v1 import common_pb2, selector_pb2

C = common_pb2
S = selector_pb2


def _chat(content: str) -> C.Input:
    model_input = C.Input()
    model_input.chat.messages.add(role="user", content=content)
    return model_input


@pytest.mark.parametrize(
    ("model_input", "params"),
    [
        (C.Input(text="Read this aloud."), C.GenerationParams(voice="joe")),
        (C.Input(text="def spoken(): pass"), C.GenerationParams(audio_format="pcm")),
        (_chat("Summarize nothing, just say it."), C.GenerationParams(audio_format="wav")),
    ],
    ids=["voice", "audio-format-over-code", "chat"],
)
def test_text_with_a_speech_parameter_is_text_to_speech(
    model_input: C.Input, params: C.GenerationParams
) -> None:
    task = analyse(S.Task(), model_input, params)
    assert task.type == S.TASK_TYPE_TEXT_TO_SPEECH
    assert task.input_modality == C.MODALITY_TEXT
    assert list(task.required_capabilities) == [C.CAPABILITY_TEXT_TO_SPEECH]


def test_a_text_to_speech_task_requires_speech_not_text_generation() -> None:
    task = analyse(
        S.Task(type=S.TASK_TYPE_TEXT_TO_SPEECH), C.Input(text="Hello"), C.GenerationParams()
    )
    assert list(task.required_capabilities) == [C.CAPABILITY_TEXT_TO_SPEECH]


def test_a_response_schema_still_requires_json_output_beside_speech() -> None:
    params = C.GenerationParams(voice="joe", response_schema_json='{"type": "object"}')
    task = analyse(S.Task(), C.Input(text="Hello"), params)
    assert list(task.required_capabilities) == [
        C.CAPABILITY_TEXT_TO_SPEECH,
        C.CAPABILITY_JSON_OUTPUT,
    ]


def test_audio_with_a_voice_is_still_speech_to_text() -> None:
    task = analyse(S.Task(), C.Input(audio=C.Audio(data=b"RIFF")), C.GenerationParams(voice="x"))
    assert task.type == S.TASK_TYPE_SPEECH_TO_TEXT
    assert list(task.required_capabilities) == [C.CAPABILITY_SPEECH_TO_TEXT]


def test_plain_text_is_not_text_to_speech() -> None:
    task = analyse(S.Task(), C.Input(text="Hello"), C.GenerationParams())
    assert task.type == S.TASK_TYPE_COMPLETION
    assert list(task.required_capabilities) == [C.CAPABILITY_TEXT_GENERATION]
