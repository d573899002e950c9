"""Stream-safe failover by prefill continuation, through a running gateway.

The fake OpenAI upstream streams 40 of a 60-token answer from ``model-a`` and
then drops the connection (`FakeUpstream.cut_then_continue`); the request names
``model-b`` as its fallback. When ``model-b``'s profile declares
``assistant_prefill``, it is sent the input and the 40 delivered tokens as an
assistant prefill (``"prefix": true``) and streams the other 20; when it
refuses the prefill (HTTP 400), or no model of the chain declares the
capability, the caller gets the original cut: ABORTED, saying how much (the
40 tokens' characters) had reached it.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from backends.openai_compat.openai_fake import FakeUpstream
from conftest import StackFactory

from modelyard.assembly import Stack
from modelyard.config import ConfigError, parse_config
from modelyard_client.errors import StreamTruncated, error_from_rpc
from modelyard_client.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

A, B = "custom/model-a", "custom/model-b"
PIECES = [f"t{i} " for i in range(60)]  # one token each
CUT_AFTER = 40
DELIVERED = "".join(PIECES[:CUT_AFTER])
# What the cut says (pieces arriving in one read are one chunk: the count of chunks varies).
CUT = f"the answer of '{A}' was cut short after "
CUT_SIZE = f"({len(DELIVERED)} characters) had reached the caller"
PREFILL = "{capabilities: [chat, streaming, assistant_prefill]}"
NO_PREFILL = "{capabilities: [chat, streaming]}"


async def _stack(make_stack: StackFactory, upstream: FakeUpstream, profile_b: str) -> Stack:
    config = parse_config(
        f"""
model_system:
  backends:
    custom:
      kind: openai_compat
      endpoint: "{upstream.url}"
      model_profiles: {{model-b: {profile_b}}}
"""
    )
    stack = await make_stack(roles=("registry", "gateway", "backend-openai-compat"), config=config)
    assert stack.view is not None
    deadline = asyncio.get_running_loop().time() + 5
    while {m.id for m in stack.view.models()} != {A, B}:  # the gateway's copy of the catalog
        assert asyncio.get_running_loop().time() < deadline, "the catalog copy never caught up"
        await asyncio.sleep(0.02)
    return stack


async def _stream(
    stack: Stack, fallbacks: tuple[str, ...] = (B,)
) -> tuple[list[gateway_pb2.GenerateChunk], grpc.aio.AioRpcError | None]:
    """The chunks the caller receives, and the error that ends them (None: none)."""
    request = gateway_pb2.GenerateRequest(model=A, fallback_models=fallbacks)
    request.input.text = "Count to sixty."
    request.params.max_tokens = 200
    chunks: list[gateway_pb2.GenerateChunk] = []
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        try:
            async for chunk in stub.GenerateStream(request, timeout=10):
                chunks.append(chunk)
        except grpc.aio.AioRpcError as exc:
            return chunks, exc
    return chunks, None


def _prefill_sent(upstream: FakeUpstream) -> dict[str, object]:
    """The last message of the one request model-b received."""
    [body] = [b for b in upstream.bodies if b["model"] == "model-b"]
    last: dict[str, object] = body["messages"][-1]
    assert body["messages"][:-1] == [{"role": "user", "content": "Count to sixty."}]
    return last


async def test_a_cut_stream_is_continued_by_a_prefill_capable_fallback(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    upstream.cut_then_continue(PIECES, cut_after=CUT_AFTER, cutting="model-a", continuing="model-b")
    stack = await _stack(make_stack, upstream, PREFILL)
    assert stack.view is not None
    entry = stack.view.get(B)
    assert common_pb2.CAPABILITY_ASSISTANT_PREFILL in entry.capabilities

    chunks, error = await _stream(stack)

    assert error is None
    assert "".join(c.text for c in chunks) == "".join(PIECES)  # 40 + 20, nothing repeated
    assert chunks[0].model_id == A and chunks[0].request_id
    later = chunks[1:]  # the answer's model and id: named once, on its first chunk
    assert [(c.model_id, c.request_id) for c in later] == [("", "")] * len(later)
    assert chunks[-1].finish_reason == common_pb2.FINISH_REASON_STOP
    assert chunks[-1].usage.output_tokens == 20  # the continuation's own usage
    assert _prefill_sent(upstream) == {
        "role": "assistant",
        "content": DELIVERED,
        "prefix": True,
    }
    assert [b["model"] for b in upstream.bodies] == ["model-a", "model-b"]
    assert "prefix" not in upstream.bodies[0]["messages"][-1]  # the first call: no prefill


async def test_a_fallback_refusing_the_prefill_leaves_the_original_cut(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    upstream.cut_then_continue(
        PIECES, cut_after=CUT_AFTER, cutting="model-a", continuing="model-b", takes_prefill=False
    )
    stack = await _stack(make_stack, upstream, PREFILL)

    chunks, error = await _stream(stack)

    assert error is not None
    assert error.code() == grpc.StatusCode.ABORTED
    err = error_from_rpc(error)
    assert isinstance(err, StreamTruncated), err
    assert err.message.startswith(CUT) and CUT_SIZE in err.message
    assert "Expected last role" not in err.message  # model-b's 400 is not the answer
    assert "".join(c.text for c in chunks) == DELIVERED
    assert not any(c.finish_reason for c in chunks)
    assert _prefill_sent(upstream)["prefix"] is True  # it was asked, and refused


async def test_without_a_prefill_capable_model_the_cut_is_aborted(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    upstream.cut_then_continue(PIECES, cut_after=CUT_AFTER, cutting="model-a", continuing="model-b")
    stack = await _stack(make_stack, upstream, NO_PREFILL)

    chunks, error = await _stream(stack)

    assert error is not None
    assert error.code() == grpc.StatusCode.ABORTED
    err = error_from_rpc(error)
    assert isinstance(err, StreamTruncated), err
    assert err.message.startswith(CUT) and CUT_SIZE in err.message
    assert "".join(c.text for c in chunks) == DELIVERED
    assert [b["model"] for b in upstream.bodies] == ["model-a"]  # model-b never asked


def test_assistant_prefill_is_a_capability_model_profiles_accept() -> None:
    config = parse_config(
        """
model_system:
  backends:
    custom:
      kind: openai_compat
      endpoint: "http://127.0.0.1:1"
      model_profiles: {model-b: {capabilities: [chat, assistant_prefill]}}
"""
    )
    profile = config.backends["custom"].model_profiles["model-b"]
    assert profile.capabilities == ("chat", "assistant_prefill")
    with pytest.raises(ConfigError, match="'prefill' is not one of"):
        parse_config(
            "model_system: {backends: {custom: {kind: openai_compat, endpoint: 'http://h:1', "
            "model_profiles: {m: {capabilities: [prefill]}}}}}"
        )
