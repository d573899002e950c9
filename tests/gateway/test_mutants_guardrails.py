"""The answer's schema check, word for word (killing mutmut's survivors in
`gateway.guardrails.AnswerCheck._validate` and `_short`, docs/testing.md, the sixth
session): an answer that is not JSON is refused with the parser's reason, saying it was
cut at max_tokens only when it was, and naming no schema path; a validation message
over 300 characters is cut to 300 and "…", one of 300 is kept whole.

The not-JSON refusal through a running stack (registry, gateway, an openai_compat
backend in front of the fake upstream echoing the prompt), read back as any client
reads it; the rest on `AnswerCheck` itself, whose finish reason the test chooses.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator

import grpc
import pytest
from backends.openai_compat.openai_fake import FakeUpstream
from conftest import StackFactory

from modelyard.config import parse_config
from modelyard.gateway.guardrails import AnswerCheck, Guardrails
from modelyard_client.errors import OutputSchemaMismatch, error_from_rpc
from modelyard_client.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

MODEL = "custom/model-a"
OBJECT = '{"type": "object"}'
NOT_JSON = "Sure! Here it is"


def _request(text: str, schema: str) -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=MODEL)
    request.input.text = text
    request.params.max_tokens = 200
    request.params.response_schema_json = schema
    return request


async def test_an_answer_that_is_not_json_is_refused_with_the_reason_and_no_schema_path(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    upstream.echo_prompt()
    config = parse_config(
        "model_system:\n  backends:\n"
        f'    custom: {{kind: openai_compat, endpoint: "{upstream.url}"}}\n'
    )
    stack = await make_stack(roles=("registry", "gateway", "backend-openai-compat"), config=config)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Generate(_request(NOT_JSON, OBJECT), timeout=20)
    err = error_from_rpc(caught.value)
    assert isinstance(err, OutputSchemaMismatch)
    # Finished with "stop": nothing about max_tokens, nothing in brackets.
    assert err.message == (
        "the answer is not JSON, so it does not follow params.response_schema_json: "
        "Expecting value: line 1 column 1 (char 0)"
    )
    assert (err.schema_path, err.instance_path) == ("", "$")


def _check(schema: str) -> AnswerCheck:
    request = _request("hi", schema)
    check = Guardrails(
        parse_config("model_system:\n  security: {guardrails: {}}").security.guardrails
    ).answer_check(request)
    assert check is not None
    return check


async def _answer(
    text: str, finish: common_pb2.FinishReason.ValueType
) -> AsyncGenerator[gateway_pb2.GenerateChunk, None]:
    yield gateway_pb2.GenerateChunk(text=text, finish_reason=finish)


async def _refusal(
    check: AnswerCheck, text: str, finish: common_pb2.FinishReason.ValueType
) -> OutputSchemaMismatch:
    with pytest.raises(OutputSchemaMismatch) as caught:
        async for _ in check.checked(_answer(text, finish)):
            pass
    return caught.value


async def test_an_answer_cut_at_max_tokens_that_is_not_json_says_it_was_cut() -> None:
    err = await _refusal(_check(OBJECT), '{"name": "Ad', common_pb2.FINISH_REASON_LENGTH)
    assert err.message == (
        "the answer is not JSON, so it does not follow params.response_schema_json "
        "(it was cut at max_tokens): Unterminated string starting at: line 1 column 10 (char 9)"
    )
    assert (err.schema_path, err.instance_path) == ("", "$")


async def test_an_unfinished_answer_of_another_reason_does_not_say_max_tokens() -> None:
    err = await _refusal(_check(OBJECT), NOT_JSON, common_pb2.FINISH_REASON_CONTENT_FILTER)
    assert err.message == (
        "the answer is not JSON, so it does not follow params.response_schema_json: "
        "Expecting value: line 1 column 1 (char 0)"
    )


def _type_error_of(chars: int) -> str:
    """The answer, a JSON string, whose validation message is `chars` characters long."""
    value = "a" * (chars - len("'' is not of type 'integer'"))
    message = f"'{value}' is not of type 'integer'"
    assert len(message) == chars
    return json.dumps(value)


def _expected(message: str) -> str:
    return (
        f"the answer does not follow params.response_schema_json at $: {message} (schema path type)"
    )


async def test_a_validation_message_of_300_characters_is_kept_whole() -> None:
    answer = _type_error_of(300)
    err = await _refusal(_check('{"type": "integer"}'), answer, common_pb2.FINISH_REASON_STOP)
    assert err.message == _expected(f"'{json.loads(answer)}' is not of type 'integer'")
    assert (err.schema_path, err.instance_path) == ("type", "$")


async def test_a_validation_message_of_301_characters_is_cut_to_300_and_an_ellipsis() -> None:
    answer = _type_error_of(301)
    err = await _refusal(_check('{"type": "integer"}'), answer, common_pb2.FINISH_REASON_STOP)
    whole = f"'{json.loads(answer)}' is not of type 'integer'"
    assert len(whole) == 301
    assert err.message == _expected(whole[:300] + "…")
