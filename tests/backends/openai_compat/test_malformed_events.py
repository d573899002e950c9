"""An event a chat stream may not carry is a provider protocol error, named, never INTERNAL.

UNKNOWN with reason PROVIDER_PROTOCOL_ERROR: the fault is the upstream's, and
the message says what was wrong with which event. Before, an event that was
JSON but no chunk (``[]``, ``42``, text that is a number) escaped as an
unexpected exception: INTERNAL, "internal error", nothing said.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import grpc
import pytest
from backends.openai_compat.openai_fake import FakeUpstream, StackFor, chunk, request

from modelyard.backends.openai_compat.chat_stream import ChatStream
from modelyard_client.errors import ProviderError, ProviderProtocolError, error_from_rpc


async def _body(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def _failure(*parts: bytes) -> tuple[str, ProviderError]:
    """The text streamed before the failure, and the failure."""
    stream = ChatStream("custom", "custom/m")
    text = []
    with pytest.raises(ProviderError) as info:
        async for piece in stream.pieces(_body(*parts)):
            text.append(piece.text)
    return "".join(text), info.value


def _event(data: object) -> bytes:
    return f"data: {json.dumps(data)}\n\n".encode()


def _with_choice(**choice: object) -> dict[str, object]:
    return {"choices": [{"index": 0, **choice}]}


@pytest.mark.parametrize(
    ("event", "problem"),
    [
        (b"data: {not json\n\n", "not JSON"),
        (_event([1, 2]), "a JSON list, not an object"),
        (_event(42), "a JSON int, not an object"),
        (_event("hello"), "a JSON str, not an object"),
        (_event({"choices": "abc"}), "choices is not a list"),
        (_event({"choices": ["abc"]}), "choices[0] is not an object"),
        (_event(_with_choice(delta="Hi")), "choices[0].delta is not an object"),
        (_event(_with_choice(delta={"content": 5})), "choices[0].delta.content is 5, not a string"),
        (
            _event(_with_choice(delta={}, finish_reason=1)),
            "choices[0].finish_reason is 1, not a string",
        ),
        (_event({"choices": [], "usage": "many"}), "usage is not an object"),
        (
            _event({"choices": [], "usage": {"prompt_tokens": "8"}}),
            "usage.prompt_tokens is '8', not a count",
        ),
        (
            _event({"choices": [], "usage": {"completion_tokens": -1}}),
            "usage.completion_tokens is -1, not a count",
        ),
        (
            _event({"choices": [], "usage": {"completion_tokens": True}}),
            "usage.completion_tokens is True, not a count",
        ),
    ],
)
async def test_a_malformed_event_is_a_protocol_error_saying_what_is_wrong(
    event: bytes, problem: str
) -> None:
    streamed, err = await _failure(_event(chunk("Hi")), event, _event(chunk(finish_reason="stop")))
    assert streamed == "Hi"  # what came before still reached the caller
    assert type(err) is ProviderProtocolError
    data = event.decode().removeprefix("data: ").rstrip("\n")
    assert err.message == (
        f"upstream 'custom' sent a malformed event for 'custom/m' ({problem}): {data!r}"
    )


async def test_bytes_that_are_not_utf8_are_a_protocol_error() -> None:
    bad = b'data: {"choices": [{"delta": {"content": "\xff"}}]}\n\n'
    streamed, err = await _failure(_event(chunk("Hi")), bad)
    assert streamed == "Hi"
    assert type(err) is ProviderProtocolError
    assert err.message == (
        "upstream 'custom' sent a malformed event for 'custom/m' "
        f"(bytes that are not UTF-8 (invalid start byte)): {bad!r}"
    )


async def test_an_error_event_stays_the_providers_own_error() -> None:
    streamed, err = await _failure(_event({"error": {"message": "overloaded"}}))
    assert streamed == ""
    assert type(err) is ProviderError
    assert err.message == "upstream 'custom' failed mid-stream: {'message': 'overloaded'}"


async def test_null_fields_are_no_fault() -> None:
    # What OpenAI sends: content and usage null until they mean something.
    stream = ChatStream("custom", "custom/m")
    events = [
        _event(_with_choice(delta={"role": "assistant", "content": None}, finish_reason=None)),
        _event({**_with_choice(delta={"content": "Hi"}), "usage": None}),
        _event(_with_choice(delta={}, finish_reason="stop")),
        _event({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}),
        b"data: [DONE]\n\n",
    ]
    pieces = [p async for p in stream.pieces(_body(*events))]
    assert "".join(p.text for p in pieces) == "Hi"
    assert (pieces[-1].input_tokens, pieces[-1].output_tokens) == (3, 1)


async def test_the_gateway_answers_unknown_with_the_protocol_reason(
    upstream: FakeUpstream, stack_for: StackFor
) -> None:
    upstream.stream(["[1, 2]"])  # raw data: JSON, but no chunk
    clients = await stack_for(upstream.url)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await clients.gateway.Generate(request(), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNKNOWN
    err = error_from_rpc(info.value)
    assert type(err) is ProviderProtocolError
    assert err.reason == "PROVIDER_PROTOCOL_ERROR"
    assert err.message == (
        "upstream 'custom' sent a malformed event for 'custom/fake-model' "
        "(a JSON list, not an object): '[1, 2]'"
    )
