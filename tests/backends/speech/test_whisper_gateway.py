"""End to end: audio sent to the gateway with no model is routed to Whisper by selection."""

from __future__ import annotations

import grpc
import pytest
from backends.speech.speech_audio import WORDS, missed
from conftest import StackFactory
from support.scripted_engine import ScriptedEngine

from modelyard.config import parse_config
from modelyard_client.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

CONFIG = "model_system: {backends: {speech: {kind: whisper, beam_size: 1}}}"
MODEL = "speech/whisper-tiny.en"


async def test_audio_without_a_model_is_transcribed_by_whisper(
    make_stack: StackFactory, spoken_wav: bytes
) -> None:
    text_model = ScriptedEngine()  # a text model beside it: selection must tell them apart
    stack = await make_stack(
        [text_model],
        config=parse_config(CONFIG),
        roles=("registry", "selector", "gateway", "backend-local"),
    )
    request = gateway_pb2.GenerateRequest(no_cache=True)  # no model: the selector picks one
    request.input.audio.data = spoken_wav
    request.input.audio.mime_type = "audio/wav"
    request.input.audio.sample_rate_hz = 22050
    async with grpc.aio.insecure_channel(stack.address) as channel:
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        response = await gateway.Generate(request, timeout=120)
        chunks = [c async for c in gateway.GenerateStream(request, timeout=120)]
        text_request = gateway_pb2.GenerateRequest()
        text_request.input.text = "transcribe this"
        text_reply = await gateway.Generate(text_request, timeout=30)
        text_request.model = MODEL
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await gateway.Generate(text_request, timeout=30)
    assert response.model_id == MODEL and not response.cached
    assert missed(WORDS, response.text) == [], response.text
    assert response.finish_reason == common_pb2.FINISH_REASON_STOP
    assert response.usage.output_tokens > len(WORDS)
    assert chunks[0].model_id == MODEL
    assert "".join(c.text for c in chunks) == response.text  # greedy: the same transcript
    assert chunks[-1].finish_reason == common_pb2.FINISH_REASON_STOP
    assert chunks[-1].usage.output_tokens == response.usage.output_tokens
    assert text_reply.model_id == "scripted/echo"
    assert [model_input.WhichOneof("kind") for _, model_input, _ in text_model.calls] == ["text"]
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"model '{MODEL}' does not take MODALITY_TEXT input" in (refused.value.details() or "")
