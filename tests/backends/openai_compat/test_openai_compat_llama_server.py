"""End to end through the gateway to a real llama.cpp server (`llama_cpp.server`, Gemma 3 270M).

The server has no chat template for this GGUF and falls back to the llama-2
format, in which the model answers most bare user messages with an immediate
end of turn. The prompts here are ones it does answer, at temperature 0.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
import grpc
import pytest
from backends.openai_compat.openai_fake import Clients, StackFor

from modelyard_client.v1 import backend_pb2, common_pb2, gateway_pb2, registry_pb2

pytestmark = pytest.mark.slow

MODEL = "custom/gemma-3-270m"


def _text_request(
    text: str = "List ten fruits:\n1.", max_tokens: int = 8
) -> gateway_pb2.GenerateRequest:
    req = gateway_pb2.GenerateRequest(model=MODEL)
    req.input.text = text
    req.params.max_tokens = max_tokens
    req.params.temperature = 0.0
    return req


def _chat_request(
    system: str = "You are a helpful assistant.",
    user: str = "Tell me about cats.",
    max_tokens: int = 8,
) -> gateway_pb2.GenerateRequest:
    req = gateway_pb2.GenerateRequest(model=MODEL)
    req.input.chat.messages.add(role="system", content=system)
    req.input.chat.messages.add(role="user", content=user)
    req.params.max_tokens = max_tokens
    req.params.temperature = 0.0
    return req


@pytest.fixture
async def llama(llama_server: str, stack_for: StackFor) -> Clients:
    return await stack_for(llama_server)


async def test_llama_model_is_in_the_catalog_as_custom(llama: Clients, llama_server: str) -> None:
    listed = await llama.registry.ListModels(registry_pb2.ListModelsRequest(provider="custom"))
    assert [m.id for m in listed.models] == [MODEL]
    [entry] = listed.models
    assert entry.name == "gemma-3-270m"
    assert [d.backend for d in entry.deployments] == ["openai_compat"]
    assert entry.metadata["base_url"] == f"{llama_server}/v1"
    health = await llama.backend.Health(backend_pb2.BackendHealthRequest(), timeout=10)
    assert health.status == common_pb2.HEALTH_STATUS_HEALTHY, health.reason


@pytest.mark.parametrize("make_request", [_chat_request, _text_request], ids=["chat", "text"])
async def test_llama_stream_has_real_chunks_and_ends_on_length(
    llama: Clients, make_request: Callable[[], gateway_pb2.GenerateRequest]
) -> None:
    req = make_request()
    chunks = [c async for c in llama.gateway.GenerateStream(req, timeout=60)]

    texts = [c.text for c in chunks[:-1]]
    assert len(texts) >= 3, texts
    assert all(texts), texts  # every piece carries text; only the last chunk is empty
    assert "".join(texts).strip()
    assert chunks[0].model_id == MODEL
    assert all(c.model_id == "" for c in chunks[1:])
    assert all(c.finish_reason == common_pb2.FINISH_REASON_UNSPECIFIED for c in chunks[:-1])
    assert chunks[-1].finish_reason == common_pb2.FINISH_REASON_LENGTH


async def test_llama_stream_reports_output_tokens(llama: Clients) -> None:
    # llama_cpp.server sends no usage chunk even when stream_options.include_usage
    # asks for one, so the count has to come from the stream itself.
    chunks = [c async for c in llama.gateway.GenerateStream(_text_request(), timeout=60)]
    last = chunks[-1]
    assert last.finish_reason == common_pb2.FINISH_REASON_LENGTH
    assert 0 < last.usage.output_tokens <= 8


@pytest.mark.parametrize("make_request", [_chat_request, _text_request], ids=["chat", "text"])
async def test_llama_generate_returns_real_text(
    llama: Clients, make_request: Callable[[], gateway_pb2.GenerateRequest]
) -> None:
    response = await llama.gateway.Generate(make_request(), timeout=60)
    assert response.model_id == MODEL
    assert response.text.strip()
    assert response.finish_reason == common_pb2.FINISH_REASON_LENGTH


# ---- interruption ------------------------------------------------------------------

# A prompt the model answers at length: it runs to max_tokens (~15 s for 300
# tokens on 2 cores) unless interrupted.
_LONG_SYSTEM = "You are a storyteller."
_LONG_USER = "Count from 1 to 100, separated by commas."


async def _interrupt(http: aiohttp.ClientSession, llama_server: str) -> int:
    """A second request straight to the server; it is served once the first one gives way."""
    body = {
        "model": "gemma-3-270m",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 1,
    }
    async with http.post(
        f"{llama_server}/v1/chat/completions",
        json=body,
        timeout=aiohttp.ClientTimeout(total=120),
    ) as resp:
        await resp.read()
        return resp.status


async def _stream_interrupted_after_first_chunk(
    llama: Clients, http: aiohttp.ClientSession, llama_server: str
) -> tuple[list[gateway_pb2.GenerateChunk], grpc.aio.AioRpcError | None]:
    call = llama.gateway.GenerateStream(
        _chat_request(_LONG_SYSTEM, _LONG_USER, max_tokens=300), timeout=120
    )
    stream = aiter(call)
    first = await anext(stream, None)
    assert first is not None, "the stream ended before its first chunk"
    chunks = [first]
    interrupting = asyncio.create_task(_interrupt(http, llama_server))
    error: grpc.aio.AioRpcError | None = None
    try:
        async for chunk in stream:
            chunks.append(chunk)
    except grpc.aio.AioRpcError as exc:
        error = exc
    finally:
        # The server is only free for the next test once the interrupting request is done.
        assert await interrupting == 200
    return chunks, error


async def test_llama_interrupted_stream_is_aborted_as_truncated(
    llama: Clients, llama_server: str
) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(3):
            chunks, error = await _stream_interrupted_after_first_chunk(llama, http, llama_server)
            if error is not None:
                break
            last = chunks[-1].finish_reason
            # The only honest way to finish normally: the model chose to stop in
            # the few tokens before the interrupt reached the server. Running to
            # max_tokens means the interrupt went unnoticed; that is a failure.
            assert last == common_pb2.FINISH_REASON_STOP, (
                f"the stream finished with {common_pb2.FinishReason.Name(last)} after "
                f"{len(chunks)} chunks although a second request interrupted it"
            )
        else:
            pytest.fail("the model stopped on its own before every one of 3 interrupts")

    assert error.code() == grpc.StatusCode.ABORTED, error.details()
    details = error.details() or ""
    assert "upstream 'custom'" in details
    assert "truncated" in details
    assert chunks[0].model_id == MODEL
    assert all(c.finish_reason == common_pb2.FINISH_REASON_UNSPECIFIED for c in chunks)
    assert len(chunks) < 300
