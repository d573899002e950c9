"""Task analysis rules mutation testing found unchecked (`selector.task_analysis`,
docs/testing.md, the fifth run): text or chat asked for with a voice or an audio format
is text to speech, needing that capability alone; another input kind with a voice is
not; and a chat message's text parts are read as separate lines.

In process, through `analyse` (what `Select` and the gateway's model-less requests call).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from modelyard.selector.task_analysis import analyse
from modelyard_client.v1 import common_pb2, selector_pb2

C = common_pb2
S = selector_pb2


def _text() -> C.Input:
    return C.Input(text="Turn left at the old bridge.")


def _chat() -> C.Input:
    model_input = C.Input()
    model_input.chat.messages.add(role="user", content="Turn left at the old bridge.")
    return model_input


@pytest.mark.parametrize("make_input", [_text, _chat], ids=["text", "chat"])
@pytest.mark.parametrize(
    "params",
    [C.GenerationParams(voice="joe"), C.GenerationParams(audio_format="wav")],
    ids=["a voice", "an audio format"],
)
def test_text_or_chat_with_a_voice_or_an_audio_format_is_spoken_and_needs_only_speech(
    make_input: Callable[[], C.Input], params: C.GenerationParams
) -> None:
    task = analyse(S.Task(), make_input(), params)
    assert task.type == S.TASK_TYPE_TEXT_TO_SPEECH
    # Spoken, not answered: no chat or text generation capability besides.
    assert list(task.required_capabilities) == [C.CAPABILITY_TEXT_TO_SPEECH]
    assert task.input_modality == C.MODALITY_TEXT


def test_a_structured_input_with_a_voice_is_not_speech() -> None:
    model_input = C.Input()
    model_input.structured.update({"street": "old bridge"})
    task = analyse(S.Task(), model_input, C.GenerationParams(voice="joe"))
    assert task.type == S.TASK_TYPE_COMPLETION
    assert list(task.required_capabilities) == []


def test_a_chat_messages_text_parts_are_read_as_separate_lines() -> None:
    # "summary" ends the first part and nothing else in the message asks for one: it
    # is a whole word only when the parts are joined by a bare line break.
    message = C.ChatMessage(
        role="user",
        parts=[C.ContentPart(text="Give me a summary"), C.ContentPart(text="of the report")],
    )
    task = analyse(S.Task(), C.Input(chat=C.ChatMessages(messages=[message])), C.GenerationParams())
    assert task.type == S.TASK_TYPE_SUMMARIZATION
    assert list(task.required_capabilities) == [C.CAPABILITY_CHAT]
