"""Each refusal of `check_request` / `check_against_model` names the request field it is about."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from modelyard.gateway.settings import GatewaySettings
from modelyard.gateway.validation import check_against_model, check_request
from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import common_pb2, gateway_pb2

Mutate = Callable[[gateway_pb2.GenerateRequest], object]


def _request() -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model="m")
    request.input.text = "hi"
    return request


def _chat(*roles_and_contents: tuple[str, str]) -> Mutate:
    def mutate(r: gateway_pb2.GenerateRequest) -> None:
        r.input.ClearField("text")
        r.input.chat.SetInParent()
        for role, content in roles_and_contents:
            r.input.chat.messages.add(role=role, content=content)

    return mutate


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: r.ClearField("input"), "input"),
        (lambda r: setattr(r.input, "text", "  "), "input.text"),
        (_chat(), "input.chat.messages"),
        (_chat(("user", "hi"), ("wizard", "hi")), "input.chat.messages[1].role"),
        (_chat(("user", " ")), "input.chat.messages"),
        (lambda r: setattr(r.params, "max_tokens", -1), "params.max_tokens"),
        (lambda r: setattr(r.params, "max_tokens", 2_000_000), "params.max_tokens"),
        (lambda r: setattr(r.params, "temperature", 3.0), "params.temperature"),
        (lambda r: setattr(r.params, "top_p", 0.0), "params.top_p"),
        (lambda r: setattr(r.params, "top_k", -2), "params.top_k"),
    ],
    ids=[
        "no-input",
        "blank-text",
        "no-messages",
        "bad-role",
        "empty-messages",
        "negative-max-tokens",
        "max-tokens-over-ceiling",
        "temperature",
        "top-p",
        "top-k",
    ],
)
def test_check_request_names_the_wrong_field(mutate: Mutate, field: str) -> None:
    request = _request()
    mutate(request)
    with pytest.raises(InvalidRequest) as refused:
        check_request(request, GatewaySettings())
    assert refused.value.field == field


def test_an_input_the_model_does_not_take_names_input() -> None:
    model = common_pb2.ModelEntry(id="m", input_modalities=[common_pb2.MODALITY_IMAGE])
    with pytest.raises(InvalidRequest) as refused:
        check_against_model(_request(), model, 8)
    assert refused.value.field == "input"


def test_max_tokens_over_the_context_window_names_params_max_tokens() -> None:
    model = common_pb2.ModelEntry(id="m", context_window=100)
    with pytest.raises(InvalidRequest) as refused:
        check_against_model(_request(), model, 101)
    assert refused.value.field == "params.max_tokens"
