"""Request validation at its exact limits, every refusal's whole message (docs/testing.md).

In process: `check_request` and `check_against_model` on built requests. The tests from
`test_each_params_refusal_says_the_whole_message` on were written in the tenth session,
for mutmut's survivors in `gateway.validation` (each named in docs/testing.md).
"""

from __future__ import annotations

import pytest

from modelyard.gateway.settings import GatewaySettings
from modelyard.gateway.validation import check_against_model, check_request
from modelyard.model_input import input_size_bytes
from modelyard_client.errors import ContextLengthExceeded, InvalidRequest, RequestTooLarge
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


def test_each_params_refusal_says_the_whole_message() -> None:
    ceiling = SETTINGS.max_tokens_ceiling
    refusals = {
        ("max_tokens", -1): "params.max_tokens must be >= 0, got -1",
        ("max_tokens", ceiling + 1): (
            f"params.max_tokens {ceiling + 1} is above the gateway's ceiling of {ceiling} "
            "(security.input_limits.max_tokens)"
        ),
        ("temperature", -0.5): "params.temperature must be in [0, 2], got -0.5",
        ("temperature", 2.5): "params.temperature must be in [0, 2], got 2.5",
        ("top_p", 1.5): "params.top_p must be in (0, 1], got 1.5",
    }
    for (name, value), message in refusals.items():
        request = _text()
        setattr(request.params, name, value)
        assert _refusal(request) == message


def test_tool_turns_are_checked_in_a_request_that_defines_no_tools() -> None:
    # Each of the three marks of a tool turn alone has its chat checked with the tools.
    result = _chat(("tool", "-3 C"))  # a tool result naming no call
    assert _refusal(result) == (
        "input.chat.messages[0] is a tool result without tool_call_id: name the call it answers"
    )
    answer = _chat(("user", "Weather?"))  # an answer to a call, on a user message
    answer.input.chat.messages[0].tool_call_id = "call_1"
    assert _refusal(answer) == (
        "input.chat.messages[0].tool_call_id is set on a 'user' message: only a 'tool' "
        "message answers a call"
    )
    call = _chat(("user", "Weather?"))
    call.input.chat.messages.add(role="assistant").tool_calls.add(name="get_weather")  # no id
    assert _refusal(call) == (
        "input.chat.messages[1].tool_calls[0] needs its id and name (as the model's answer "
        "gave them)"
    )


def test_tools_or_a_tool_choice_alone_are_checked() -> None:
    tools = _text()
    tools.params.tools.add(name="get weather")  # no tool_choice
    assert _refusal(tools) == (
        "params.tools[0].name 'get weather' must be letters, digits, '_' and '-' only"
    )
    choice = _text()
    choice.params.tool_choice = "required"  # no tools
    assert _refusal(choice) == "params.tool_choice is 'required' but params.tools is empty"


def test_a_model_that_calls_no_tools_is_named_for_a_request_with_tools() -> None:
    request = _text()
    request.params.tools.add(name="get_weather")
    model = common_pb2.ModelEntry(id="p/m", provider="p", capabilities=[common_pb2.CAPABILITY_CHAT])
    with pytest.raises(InvalidRequest) as caught:
        check_against_model(request, model, 10)
    assert str(caught.value) == (
        "params.tools: model 'p/m' (provider 'p') does not call tools (no CAPABILITY_TOOLS "
        "in its catalog entry)"
    )


def test_the_input_and_max_tokens_fill_the_context_window_exactly_and_no_further() -> None:
    model = common_pb2.ModelEntry(id="p/m", context_window=100)
    check_against_model(_text(), model, 50, input_tokens=50)
    with pytest.raises(ContextLengthExceeded) as caught:
        check_against_model(_text(), model, 40, input_tokens=61)
    assert str(caught.value) == (
        "the input (about 61 tokens) and params.max_tokens 40 exceed model 'p/m' context "
        "window of 100 tokens"
    )
    assert caught.value.field == "input"
    with pytest.raises(ContextLengthExceeded) as over:
        check_against_model(_text(), model, 101)
    assert str(over.value) == (
        "params.max_tokens 101 exceeds model 'p/m' context window of 100 tokens"
    )
