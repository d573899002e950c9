"""One rule for an input's modality and size, read the same by the gateway and the selector."""

from __future__ import annotations

import pytest

from modelyard.gateway.validation import check_against_model
from modelyard.model_input import estimate_input_tokens, input_modality
from modelyard.selector.task_analysis import analyse
from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import common_pb2, gateway_pb2, selector_pb2

C = common_pb2


@pytest.mark.parametrize(
    ("model_input", "modality"),
    [
        (C.Input(text="hi"), C.MODALITY_TEXT),
        (C.Input(chat=C.ChatMessages(messages=[C.ChatMessage(role="user")])), C.MODALITY_TEXT),
        (C.Input(image=C.Image(data=b"\x89PNG")), C.MODALITY_IMAGE),
        (C.Input(audio=C.Audio(data=b"RIFF")), C.MODALITY_AUDIO),
        (C.Input(), C.MODALITY_UNSPECIFIED),
    ],
)
def test_modality_of_each_input_kind(model_input: C.Input, modality: C.Modality.ValueType) -> None:
    assert input_modality(model_input) == modality


def test_tokens_are_the_encoded_size_over_four_rounded_up() -> None:
    four_thousand = C.Input(text="x" * 4000)
    assert four_thousand.ByteSize() == 4003  # tag, two-byte length, the text
    assert estimate_input_tokens(four_thousand) == 1001
    assert estimate_input_tokens(C.Input(text="x")) == 1  # 3 bytes: still a token


def test_the_selector_sizes_and_types_a_task_as_the_gateway_does() -> None:
    model_input = C.Input(image=C.Image(data=b"\x89PNG" * 50))
    task = analyse(selector_pb2.Task(), model_input, C.GenerationParams())
    assert task.estimated_input_tokens == estimate_input_tokens(model_input)
    assert task.input_modality == input_modality(model_input) == C.MODALITY_IMAGE


def test_the_gateway_refuses_a_model_that_does_not_take_the_inputs_modality() -> None:
    request = gateway_pb2.GenerateRequest(input=C.Input(image=C.Image(data=b"\x89PNG")))
    text_only = C.ModelEntry(id="p/text", input_modalities=[C.MODALITY_TEXT])
    with pytest.raises(InvalidRequest) as refused:
        check_against_model(request, text_only, max_tokens=10)
    assert refused.value.message == "model 'p/text' does not take MODALITY_IMAGE input"
    both = C.ModelEntry(id="p/both", input_modalities=[C.MODALITY_TEXT, C.MODALITY_IMAGE])
    check_against_model(request, both, max_tokens=10)
