"""Guardrails through running stacks: refusals on the wire, named, and before any upstream call.

A registry, a gateway and an openai_compat backend in front of the fake
OpenAI upstream scripted with `FakeUpstream.echo_prompt` (the answer is the
prompt, in pieces of five characters); `upstream.bodies` records every chat
request that reached it. Errors are read back with `error_from_rpc`, as any
modelyard client reads them.
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from backends.openai_compat.openai_fake import FakeUpstream
from conftest import StackFactory

from modelyard.assembly import Stack
from modelyard.config import parse_config
from modelyard_client.errors import (
    ContentBlocked,
    InvalidRequest,
    ModelyardError,
    OutputSchemaMismatch,
    error_from_rpc,
)
from modelyard_client.v1 import gateway_pb2, gateway_pb2_grpc

ROLES = ("registry", "gateway", "backend-openai-compat")
MODEL = "custom/model-a"


async def _stack(make_stack: StackFactory, upstream: FakeUpstream, **fake: Any) -> Stack:
    upstream.echo_prompt(**fake)
    config = parse_config(
        f"""
model_system:
  security:
    redaction: {{enabled: true}}
    guardrails:
      deny_rules:
        - {{name: no_codenames, terms: [Project Falcon]}}
        - {{name: no_secret_word, terms: [xyzzy], applies_to: [output]}}
  backends:
    custom: {{kind: openai_compat, endpoint: "{upstream.url}"}}
"""
    )
    return await make_stack(roles=ROLES, config=config)


def _request(text: str, schema: str = "") -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=MODEL)
    request.input.text = text
    request.params.max_tokens = 200
    request.params.response_schema_json = schema
    return request


async def _refusal(stack: Stack, request: gateway_pb2.GenerateRequest) -> ModelyardError:
    async with grpc.aio.insecure_channel(stack.address) as channel:
        try:
            await gateway_pb2_grpc.GatewayServiceStub(channel).Generate(request, timeout=20)
        except grpc.aio.AioRpcError as exc:
            return error_from_rpc(exc)
    raise AssertionError("the call succeeded")


async def _stream(
    stack: Stack, request: gateway_pb2.GenerateRequest
) -> tuple[list[str], ModelyardError | None]:
    texts: list[str] = []
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        try:
            async for chunk in stub.GenerateStream(request, timeout=20):
                texts.append(chunk.text)
        except grpc.aio.AioRpcError as exc:
            return texts, error_from_rpc(exc)
    return texts, None


async def test_an_input_deny_rule_is_refused_by_name_before_any_upstream_call(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    stack = await _stack(make_stack, upstream)
    err = await _refusal(stack, _request("what is project falcon?"))
    assert isinstance(err, ContentBlocked)
    assert (err.rule, err.stage, err.field) == ("no_codenames", "input", "input.text")
    assert upstream.bodies == []


async def test_a_control_character_is_refused_before_any_upstream_call(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    stack = await _stack(make_stack, upstream)
    err = await _refusal(stack, _request("hello\x00world"))
    assert type(err) is InvalidRequest
    assert err.field == "input.text"
    assert "U+0000" in err.message
    assert upstream.bodies == []


async def test_an_output_deny_rule_ends_a_streamed_answer_by_name(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    stack = await _stack(make_stack, upstream, piece_chars=4, piece_delay_s=0.005)
    texts, err = await _stream(stack, _request("say the magic word xyzzy twice"))
    assert isinstance(err, ContentBlocked)
    assert (err.rule, err.stage) == ("no_secret_word", "output")
    assert "xyzzy" not in "".join(texts)  # cut before the piece that completed it
    assert "".join(texts).startswith("say the magic word")


async def test_an_answer_against_the_schema_fails_naming_its_path(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    stack = await _stack(make_stack, upstream)
    schema = '{"type": "object", "properties": {"age": {"type": "integer"}}}'
    err = await _refusal(stack, _request('{"age": "forty"}', schema))
    assert isinstance(err, OutputSchemaMismatch)
    assert (err.schema_path, err.instance_path) == ("properties/age/type", "$.age")
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        reply = await stub.Generate(_request('{"age": 40}', schema), timeout=20)
    assert reply.text == '{"age": 40}'


async def test_the_schema_is_checked_on_the_restored_answer(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    stack = await _stack(make_stack, upstream)
    schema = '{"type": "object", "properties": {"to": {"type": "string", "format": "email"}}}'
    request = _request('{"to": "jane.doe@example.com"}', schema)
    request.restore_redacted = True
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        reply = await stub.Generate(request, timeout=20)
    assert reply.text == '{"to": "jane.doe@example.com"}'
    assert "jane.doe" not in str(upstream.bodies)


@pytest.mark.parametrize("rpc", ["BatchGenerate", "Compare"])
async def test_batch_items_and_compare_pass_the_guardrails_too(
    make_stack: StackFactory, upstream: FakeUpstream, rpc: str
) -> None:
    stack = await _stack(make_stack, upstream)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        if rpc == "BatchGenerate":
            batch = gateway_pb2.BatchGenerateRequest(requests=[_request("about Project Falcon")])
            (result,) = (await stub.BatchGenerate(batch, timeout=20)).results
        else:
            compare = gateway_pb2.CompareRequest(models=[MODEL], input=_request("x").input)
            compare.input.text = "mail jane.doe@example.com"
            (result,) = (await stub.Compare(compare, timeout=20)).results
    if rpc == "BatchGenerate":
        assert result.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert "content filter rule 'no_codenames'" in result.error.message
        assert upstream.bodies == []
    else:
        assert result.response.text == "mail [EMAIL_1]"
        assert "jane.doe" not in str(upstream.bodies)
