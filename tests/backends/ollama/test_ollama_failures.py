"""Every way a call to Ollama fails, as the class of the error hierarchy it means."""

from __future__ import annotations

import asyncio
from typing import Literal

import ollama
import pytest
from backends.ollama.calls import MODEL, chat_input, collect, text_input
from backends.ollama.conftest import EngineFor
from conftest import free_port
from support.fake_ollama import FakeOllama, Reply

from modelyard.backends.engine import Piece
from modelyard.backends.ollama.engine import OllamaEngine
from modelyard.backends.ollama.failures import from_response_error
from modelyard_client.errors import (
    BackendUnavailable,
    ContextLengthExceeded,
    InvalidRequest,
    ModelNotFound,
    ModelyardError,
    Overloaded,
    ProviderAccessDenied,
    ProviderAuthFailed,
    ProviderError,
    ProviderProtocolError,
    RateLimited,
    StreamTruncated,
)
from modelyard_client.v1 import common_pb2


async def test_a_model_not_pulled_is_model_not_found_with_the_daemons_words(
    engine: OllamaEngine,
) -> None:
    with pytest.raises(ModelNotFound) as caught:
        await collect(engine, model_id="ollama/missing:7b")
    assert caught.value.model_id == "ollama/missing:7b"
    assert "model 'missing:7b' not found" in caught.value.message


@pytest.mark.parametrize(
    ("model_input", "said"),
    [(chat_input(("user", "Hi")), "does not support chat"), (None, "does not support generate")],
)
async def test_a_model_that_cannot_chat_is_an_invalid_request(
    engine: OllamaEngine, model_input: common_pb2.Input | None, said: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await collect(engine, model_input, model_id="ollama/nomic-embed-text:latest")
    assert type(caught.value) is InvalidRequest
    assert said in caught.value.message


@pytest.mark.parametrize(
    ("status", "error", "headers", "expected", "retry_after_s"),
    [
        (429, "too many requests", {"Retry-After": "7"}, RateLimited, 7.0),
        (429, "too many requests", {}, RateLimited, 1.0),
        (500, "the model failed to generate a response", {}, BackendUnavailable, None),
        (503, "server busy, please try again", {"Retry-After": "3"}, BackendUnavailable, 3.0),
        (502, "cloud model unreachable", {}, BackendUnavailable, None),
        (401, "unauthorized", {}, ProviderAuthFailed, None),
        (403, "forbidden", {}, ProviderAccessDenied, None),
        (400, "input length exceeds the context length", {}, ContextLengthExceeded, None),
        (400, "invalid options", {}, InvalidRequest, None),
        (418, "teapot", {}, ProviderError, None),
    ],
)
async def test_an_error_status_is_the_class_it_means(
    daemon: FakeOllama,
    engine: OllamaEngine,
    status: int,
    error: str,
    headers: dict[str, str],
    expected: type[ModelyardError],
    retry_after_s: float | None,
) -> None:
    daemon.reply(Reply(status=status, error=error, headers=headers))
    with pytest.raises(ModelyardError) as caught:
        await collect(engine)
    assert type(caught.value) is expected
    assert error in caught.value.message
    assert getattr(caught.value, "retry_after_s", None) == retry_after_s
    if status in (401, 403):
        assert "not the caller's credentials" in caught.value.message


async def test_a_daemon_that_refuses_the_connection_is_unavailable(
    engine_for: EngineFor,
) -> None:
    engine = await engine_for(endpoint=f"http://127.0.0.1:{free_port()}")
    assert engine.health().status == common_pb2.HEALTH_STATUS_UNHEALTHY
    with pytest.raises(BackendUnavailable) as caught:
        await collect(engine)
    assert "is unreachable" in caught.value.message


@pytest.mark.parametrize(
    ("cut", "said"),
    [
        ("close", "broke off the stream for 'ollama/gemma3:270m'"),  # the connection dropped
        ("end", "ended the stream for 'ollama/gemma3:270m' after 2 piece(s) without its done"),
    ],
)
@pytest.mark.parametrize("model_input", [text_input(), chat_input(("user", "A story."))])
async def test_a_stream_cut_in_the_middle_is_truncated_after_the_text_that_came(
    daemon: FakeOllama,
    engine: OllamaEngine,
    cut: Literal["close", "end"],
    said: str,
    model_input: common_pb2.Input,
) -> None:
    daemon.reply(Reply(texts=["Once ", "upon"], cut=cut))
    pieces: list[Piece] = []
    with pytest.raises(StreamTruncated) as caught:
        async for piece in engine.infer_stream(MODEL, model_input, common_pb2.GenerationParams()):
            pieces.append(piece)
    assert [p.text for p in pieces] == ["Once ", "upon"]
    assert said in caught.value.message
    assert caught.value.message.endswith("the answer is truncated")


async def test_an_error_line_mid_stream_is_a_provider_error_scrubbed_of_credentials(
    daemon: FakeOllama, engine: OllamaEngine
) -> None:
    key = "sk-proj-" + "a" * 40
    daemon.reply(Reply(texts=["Hi"], error_line=f"runner died (Authorization: Bearer {key})"))
    with pytest.raises(ProviderError) as caught:
        await collect(engine)
    assert type(caught.value) is ProviderError
    assert "failed mid-stream: runner died" in caught.value.message
    assert key not in caught.value.message


@pytest.mark.parametrize(
    ("model_input", "line", "problem"),
    [
        (chat_input(("user", "Hi")), "{not json", "not JSON"),
        (None, "{not json", "not JSON"),
        (
            chat_input(("user", "Hi")),
            '{"message": {"role": "assistant", "content": 5}, "done": false}',
            "wrong type",
        ),
        (None, '{"response": 5, "done": false}', "wrong type"),
    ],
)
async def test_a_line_that_is_no_answer_is_a_protocol_error(
    daemon: FakeOllama,
    engine: OllamaEngine,
    model_input: common_pb2.Input | None,
    line: str,
    problem: str,
) -> None:
    daemon.reply(Reply(texts=["Hi"], raw_lines=[line]))
    with pytest.raises(ProviderProtocolError) as caught:
        await collect(engine, model_input)
    assert caught.value.message.startswith(
        "ollama 'ollama' sent a malformed answer for 'ollama/gemma3:270m'"
    )
    assert problem in caught.value.message


@pytest.mark.parametrize(
    ("model_input", "params", "field"),
    [
        (chat_input(), common_pb2.GenerationParams(), "input.chat.messages"),
        (
            chat_input(("user", "Hi", "ada")),
            common_pb2.GenerationParams(),
            "input.chat.messages[0].name",
        ),
        (
            text_input(),
            common_pb2.GenerationParams(response_schema_json="{not json"),
            "params.response_schema_json",
        ),
        (
            text_input(),
            common_pb2.GenerationParams(response_schema_json="[1, 2]"),
            "params.response_schema_json",
        ),
        (
            chat_input(("user", "Hi")),
            common_pb2.GenerationParams(continue_final_message=True),
            "params.continue_final_message",
        ),
        (text_input(""), common_pb2.GenerationParams(), "input.text"),  # it would only load
        (
            text_input(),
            common_pb2.GenerationParams(continue_final_message=True),
            "params.continue_final_message",
        ),
        (text_input(), common_pb2.GenerationParams(voice="joe"), "params.voice"),
    ],
)
async def test_input_ollama_cannot_take_is_refused_before_any_call(
    daemon: FakeOllama,
    engine: OllamaEngine,
    model_input: common_pb2.Input,
    params: common_pb2.GenerationParams,
    field: str,
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await collect(engine, model_input, params)
    assert caught.value.field == field
    assert daemon.received == []  # the daemon saw nothing


async def test_an_input_kind_other_than_text_or_chat_is_refused_before_any_call(
    daemon: FakeOllama, engine: OllamaEngine
) -> None:
    model_input = common_pb2.Input()
    model_input.image.data = b"\x89PNG"
    with pytest.raises(InvalidRequest, match="text or chat input, not image"):
        await collect(engine, model_input)
    assert daemon.received == []


async def test_calls_beyond_the_slots_and_the_queue_are_refused_at_once(
    daemon: FakeOllama, engine_for: EngineFor
) -> None:
    engine = await engine_for(max_concurrency=1, max_queue=0)
    first = engine.infer_stream(MODEL, text_input(), common_pb2.GenerationParams())
    assert (await anext(first)).text == "Hello"  # holds the only slot, mid-answer
    with pytest.raises(Overloaded) as caught:
        await asyncio.wait_for(collect(engine), 5)
    assert "backends.ollama.max_concurrency=1, max_queue=0" in caught.value.message
    await first.aclose()
    assert len(daemon.received) == 1  # the refused call sent nothing
    assert (await collect(engine))[-1].finish_reason == common_pb2.FINISH_REASON_STOP


@pytest.mark.parametrize(
    ("status", "expected"),
    [(404, ModelNotFound), (400, InvalidRequest), (500, BackendUnavailable), (429, RateLimited)],
)
def test_a_response_error_the_client_raises_itself_maps_by_the_same_table(
    status: int, expected: type[ModelyardError]
) -> None:
    raised = ollama.ResponseError('{"error": "model \'x:1b\' not found"}', status)
    error = from_response_error(raised, where="ollama 'ollama'", model_id="ollama/x:1b")
    assert type(error) is expected
    assert "model 'x:1b' not found" in error.message
