"""The local backend on the real Gemma 3 270M model through llama.cpp."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import GEMMA_ID, StackFactory
from support.chat_images import image_chat

from modelyard.backends.local.llama_engine import LlamaEngine
from modelyard.backends.local.model_files import model_id_for, scan_models_dir
from modelyard_client.errors import InvalidRequest, ModelNotFound
from modelyard_client.v1 import (
    backend_pb2,
    backend_pb2_grpc,
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
)


def _text(prompt: str) -> common_pb2.Input:
    return common_pb2.Input(text=prompt)


def _params(max_tokens: int, **kw: Any) -> common_pb2.GenerationParams:
    return common_pb2.GenerationParams(max_tokens=max_tokens, **kw)


def test_model_files_are_found_by_id(models_dir: Path, tmp_path: Path) -> None:
    assert scan_models_dir(models_dir)[GEMMA_ID].name == "gemma-3-270m-q4_k_m.gguf"
    assert model_id_for(Path("/x/My Model.Q4.gguf")) == "local/my-model.q4"
    assert scan_models_dir(tmp_path / "missing") == {}


async def test_gateway_streams_real_tokens_from_gemma(
    make_stack: StackFactory, models_dir: Path
) -> None:
    stack = await make_stack(roles=("registry", "gateway", "backend-local"), models_dir=models_dir)
    request = gateway_pb2.GenerateRequest(model=GEMMA_ID)
    request.input.text = "The capital of France is"
    request.params.max_tokens = 12
    request.params.temperature = 0.0
    arrivals: list[tuple[float, gateway_pb2.GenerateChunk]] = []
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        async for chunk in stub.GenerateStream(request, timeout=120):
            arrivals.append((time.perf_counter(), chunk))
    chunks = [c for _, c in arrivals]
    texts = [c.text for c in chunks if c.text]
    assert chunks[0].model_id == GEMMA_ID
    assert len(texts) >= 5, texts  # token by token, not one blob
    assert arrivals[-1][0] - arrivals[0][0] > 0  # pieces arrived over time
    assert "".join(texts).strip()
    last = chunks[-1]
    assert last.finish_reason in (common_pb2.FINISH_REASON_LENGTH, common_pb2.FINISH_REASON_STOP)
    assert last.usage.input_tokens > 0 and 0 < last.usage.output_tokens <= 12


async def test_chat_uses_the_gemma_format_and_is_deterministic_at_temperature_zero(
    models_dir: Path,
) -> None:
    engine = LlamaEngine(models_dir, n_ctx=512)
    await engine.start()
    chat = common_pb2.Input()
    chat.chat.messages.add(role="user", content="Name a colour.")
    params = _params(8, temperature=0.0, seed=1)
    try:
        first = [p async for p in engine.infer_stream(GEMMA_ID, chat, params)]
        second = [p async for p in engine.infer_stream(GEMMA_ID, chat, params)]
        assert [p.text for p in first] == [p.text for p in second]
        assert first[-1].finish_reason != common_pb2.FINISH_REASON_UNSPECIFIED
        assert first[-1].input_tokens > 0
        async with engine._models.lease(GEMMA_ID) as loaded:
            assert loaded.chat_format == "gemma"
        assert engine.loaded_models() == [GEMMA_ID]
    finally:
        await engine.close()
    assert engine.loaded_models() == []


async def test_stopping_a_stream_early_frees_the_model(models_dir: Path) -> None:
    engine = LlamaEngine(models_dir, n_ctx=512)
    await engine.start()
    try:
        stream = engine.infer_stream(GEMMA_ID, _text("Count: one, two,"), _params(200))
        first = await anext(stream)
        assert first.text
        await stream.aclose()  # the worker thread stops at the next token
        again = [p async for p in engine.infer_stream(GEMMA_ID, _text("Hello"), _params(3))]
        assert again[-1].finish_reason == common_pb2.FINISH_REASON_LENGTH
    finally:
        await engine.close()


async def test_unknown_model_and_unsupported_input(models_dir: Path) -> None:
    engine = LlamaEngine(models_dir)
    await engine.start()
    with pytest.raises(ModelNotFound, match="'local/nope'"):
        await anext(engine.infer_stream("local/nope", _text("x"), _params(1)))
    with pytest.raises(InvalidRequest, match="takes text or chat input, not image"):
        image = common_pb2.Input(image=common_pb2.Image(data=b"\x89PNG"))
        await anext(engine.infer_stream(GEMMA_ID, image, _params(1)))
    with pytest.raises(InvalidRequest) as refused:
        await anext(engine.infer_stream(GEMMA_ID, image_chat(), _params(1)))
    assert refused.value.message == (
        f"input.chat.messages[0].parts[1].image: model '{GEMMA_ID}' is a text-only GGUF "
        "model (llama.cpp); it takes no images"
    )
    with pytest.raises(InvalidRequest) as refused:
        await anext(engine.infer_stream(GEMMA_ID, _text("x"), _params(1, voice="joe")))
    assert (refused.value.field, refused.value.message) == (
        "params.voice",
        f"params.voice is not supported by model '{GEMMA_ID}' (llama.cpp)",
    )
    assert engine.loaded_models() == []  # refused before the model was loaded


async def test_a_speech_parameter_is_dropped_and_named_when_allowed(models_dir: Path) -> None:
    engine = LlamaEngine(models_dir, n_ctx=512)
    await engine.start()
    params = _params(2, audio_format="wav", drop_unsupported_params=True)
    try:
        pieces = [p async for p in engine.infer_stream(GEMMA_ID, _text("Hello"), params)]
    finally:
        await engine.close()
    assert pieces[-1].dropped_params == ("audio_format",)
    assert pieces[-1].finish_reason == common_pb2.FINISH_REASON_LENGTH


async def test_backend_service_health_load_unload(
    make_stack: StackFactory, models_dir: Path
) -> None:
    stack = await make_stack(roles=("registry", "backend-local"), models_dir=models_dir)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = backend_pb2_grpc.BackendServiceStub(channel)
        listed = await stub.ListModels(backend_pb2.BackendListModelsRequest())
        assert [m.id for m in listed.models] == [GEMMA_ID]
        assert listed.models[0].context_window == 2048
        loaded = await stub.Load(backend_pb2.LoadRequest(model_id=GEMMA_ID))
        assert loaded.loaded and loaded.load_ms > 0
        health = await stub.Health(backend_pb2.BackendHealthRequest())
        assert health.status == common_pb2.HEALTH_STATUS_HEALTHY
        assert list(health.loaded_models) == [GEMMA_ID]
        reply = await stub.Infer(
            backend_pb2.InferRequest(model_id=GEMMA_ID, input=_text("Hi"), params=_params(3))
        )
        assert reply.text and reply.usage.output_tokens == 3
        unloaded = await stub.Unload(backend_pb2.UnloadRequest(model_id=GEMMA_ID))
        assert unloaded.was_loaded
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.Load(backend_pb2.LoadRequest(model_id="local/nope"))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
