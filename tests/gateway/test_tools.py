"""A request's tools and tool turns are checked before any backend call (gateway/tools.py):
each way of getting them wrong is refused with INVALID_ARGUMENT naming the field."""

from __future__ import annotations

import json

import pytest

from modelyard.config.security import GuardrailsConfig
from modelyard.gateway.guardrails import Guardrails
from modelyard.gateway.settings import GatewaySettings
from modelyard.gateway.validation import check_request
from modelyard.selector.task_analysis import analyse
from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import common_pb2, gateway_pb2

OBJECT = json.dumps({"type": "object", "properties": {"city": {"type": "string"}}})


def _request(*tools: tuple[str, str]) -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model="m")
    request.input.chat.messages.add(role="user", content="Weather?")
    for name, schema in tools:
        request.params.tools.add(name=name, parameters_json=schema)
    return request


def _refusal(request: gateway_pb2.GenerateRequest) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        check_request(request, GatewaySettings())
    return info.value


def test_well_formed_tools_and_turns_pass() -> None:
    request = _request(("get_weather", OBJECT), ("now", ""))
    request.params.tool_choice = "now"
    turn = request.input.chat.messages.add(role="assistant")
    turn.tool_calls.add(id="call_1", name="get_weather", arguments_json='{"city": "Oslo"}')
    request.input.chat.messages.add(role="tool", tool_call_id="call_1", content="-3 C")
    check_request(request, GatewaySettings())
    for choice in ("", "auto", "none", "required"):
        request.params.tool_choice = choice
        check_request(request, GatewaySettings())


@pytest.mark.parametrize(
    ("tools", "field", "says"),
    [
        ([("get weather", OBJECT)], "params.tools[0].name", "letters, digits, '_' and '-' only"),
        ([("", OBJECT)], "params.tools[0].name", "letters, digits"),
        ([("a", OBJECT), ("a", OBJECT)], "params.tools[1].name", "a second tool of that name"),
        ([("a", "{not json")], "params.tools[0].parameters_json", "is not JSON"),
        ([("a", "[1]")], "params.tools[0].parameters_json", "must be a JSON object"),
        (
            [("a", json.dumps({"type": "object", "properties": 3}))],
            "params.tools[0].parameters_json",
            "is not a valid JSON Schema at properties",
        ),
        (
            [("a", json.dumps({"type": "string"}))],
            "params.tools[0].parameters_json",
            'must describe an object ("type": "object")',
        ),
    ],
)
def test_a_tool_that_is_not_as_the_contract_says_is_refused_naming_it(
    tools: list[tuple[str, str]], field: str, says: str
) -> None:
    refusal = _refusal(_request(*tools))
    assert refusal.field == field
    assert field in refusal.message and says in refusal.message


def test_a_tool_choice_names_a_tool_or_a_mode() -> None:
    request = _request(("get_weather", OBJECT))
    request.params.tool_choice = "get_wether"
    refusal = _refusal(request)
    assert refusal.field == "params.tool_choice"
    assert refusal.message == (
        "params.tool_choice 'get_wether' must be auto, none, required or a tool's name "
        "(tools: 'get_weather')"
    )
    request = _request()
    request.params.tool_choice = "required"
    assert _refusal(request).message == (
        "params.tool_choice is 'required' but params.tools is empty"
    )


def test_tool_turns_are_where_the_contract_puts_them() -> None:
    request = _request()
    request.input.chat.messages.add(role="tool", content="-3 C")
    refusal = _refusal(request)
    assert refusal.field == "input.chat.messages[1].tool_call_id"
    assert "a tool result without tool_call_id" in refusal.message

    request = _request()
    request.input.chat.messages[0].tool_call_id = "call_1"
    assert _refusal(request).field == "input.chat.messages[0].tool_call_id"

    request = _request()
    request.input.chat.messages[0].tool_calls.add(id="call_1", name="get_weather")
    assert _refusal(request).field == "input.chat.messages[0].tool_calls"

    request = _request()
    request.input.chat.messages.add(role="assistant").tool_calls.add(name="get_weather")
    refusal = _refusal(request)
    assert refusal.field == "input.chat.messages[1].tool_calls[0]"
    assert "needs its id and name" in refusal.message


def test_tools_over_their_bounds_are_refused_before_the_schema_is_read() -> None:
    request = _request(*((f"t{i}", OBJECT) for i in range(129)))
    refusal = _refusal(request)
    assert refusal.field == "params.tools"
    assert refusal.message == "params.tools has 129 entries; the limit is 128"


def test_a_request_with_tools_asks_selection_for_a_model_that_calls_them() -> None:
    request = _request(("get_weather", OBJECT))
    wanted = analyse(request.task, request.input, request.params).required_capabilities
    assert common_pb2.CAPABILITY_TOOLS in wanted
    request.params.tool_choice = "none"  # the model may not call any: any chat model will do
    wanted = analyse(request.task, request.input, request.params).required_capabilities
    assert common_pb2.CAPABILITY_TOOLS not in wanted


def test_the_guardrails_read_a_tool_calls_arguments_as_input_text() -> None:
    request = _request()
    turn = request.input.chat.messages.add(role="assistant")
    turn.tool_calls.add(id="call_1", name="get_weather", arguments_json='{"city": "Os\x00lo"}')
    with pytest.raises(InvalidRequest) as info:
        Guardrails(GuardrailsConfig()).check_input(request)
    assert info.value.field == "input.chat.messages[1].tool_calls[0].arguments_json"
