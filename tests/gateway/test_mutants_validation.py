"""Request validation at its exact limits, every refusal's whole message (docs/testing.md).

In process: `check_request` and `check_against_model` on built requests.
"""

from __future__ import annotations

import pytest

from modelyard.gateway.settings import GatewaySettings
from modelyard.gateway.validation import check_against_model, check_request
from modelyard.model_input import input_size_bytes
from modelyard_client.errors import InvalidRequest, RequestTooLarge
from modelyard_client.v1 import common_pb2, gateway_pb2

SETTINGS = GatewaySettings()


def _text(text: str = "hi") -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model="m")
    request.input.text = text
    return request


def _chat(*messages: tuple[str, str]) -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model="m")
    request.input.chat.SetInParent()
    for role, content in messages:
        request.input.chat.messages.add(role=role, content=content)
    return request


def _refusal(request: gateway_pb2.GenerateRequest) -> str:
    with pytest.raises(InvalidRequest) as caught:
        check_request(request, SETTINGS)
    return str(caught.value)


def test_empty_inputs_are_refused_with_the_whole_message() -> None:
    assert _refusal(gateway_pb2.GenerateRequest(model="m")) == (
        "input is empty: set one of text, chat, image, audio, structured"
    )
    assert _refusal(_text("  ")) == "input.text is empty"
    assert _refusal(_chat()) == "input.chat has no messages"
    assert _refusal(_chat(("user", " "), ("system", ""))) == "input.chat messages are all empty"


def test_every_chat_role_is_accepted_and_another_is_named() -> None:
    for role in ("system", "user", "assistant", "tool"):
        request = _chat((role, "hello"))
        if role == "tool":  # a tool result names the call it answers (gateway/tools.py)
            request.input.chat.messages[0].tool_call_id = "call_1"
        check_request(request, SETTINGS)
    assert _refusal(_chat(("user", "hi"), ("robot", "beep"))) == (
        "input.chat.messages[1].role 'robot' must be one of system, user, assistant, tool"
    )


def test_an_input_of_exactly_the_limit_is_accepted() -> None:
    request = _text("x" * SETTINGS.max_input_bytes)
    while (size := input_size_bytes(request.input)) > SETTINGS.max_input_bytes:
        request.input.text = request.input.text[: SETTINGS.max_input_bytes - size]
    assert size == SETTINGS.max_input_bytes
    check_request(request, SETTINGS)
    request.input.text += "x"
    with pytest.raises(RequestTooLarge) as caught:
        check_request(request, SETTINGS)
    limit = SETTINGS.max_input_bytes
    assert str(caught.value) == (
        f"input is {limit + 1} bytes; the limit is {limit} bytes "
        "(security.input_limits.max_input_bytes)"
    )


def test_params_are_accepted_at_their_bounds() -> None:
    request = _text()
    request.params.max_tokens = SETTINGS.max_tokens_ceiling
    request.params.top_p = 1.0
    request.params.top_k = 0
    for temperature in (0.0, 2.0):
        request.params.temperature = temperature
        check_request(request, SETTINGS)


def test_params_past_their_bounds_are_refused_naming_the_value() -> None:
    top_p = _text()
    top_p.params.top_p = 0.0
    assert _refusal(top_p) == "params.top_p must be in (0, 1], got 0.0"
    top_k = _text()
    top_k.params.top_k = -1
    assert _refusal(top_k) == "params.top_k must be >= 0, got -1"
    unset = _text()
    unset.params.top_k = 0  # set to its default: still checked, and fine
    check_request(unset, SETTINGS)


def test_the_model_checks_name_the_model() -> None:
    model = common_pb2.ModelEntry(
        id="p/m", input_modalities=[common_pb2.MODALITY_IMAGE], context_window=100
    )
    with pytest.raises(InvalidRequest) as caught:
        check_against_model(_text(), model, 10)
    assert str(caught.value) == "model 'p/m' does not take MODALITY_TEXT input"
    model.input_modalities[:] = [common_pb2.MODALITY_TEXT]
    check_against_model(_text(), model, 100)  # exactly the context window fits
