"""An `elevenlabs` backend in a real in-process stack, through GatewayService, against the fake."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from backends.elevenlabs.calls import KEY, MODEL, NAME, TEXT, VOICE, wav_frames
from conftest import StackFactory
from support.fake_elevenlabs import QUOTA_EXCEEDED, FakeElevenLabs, detail
from support.grpc_trailers import retry_delay_s

from modelyard.config import parse_config
from modelyard_client.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

ROLES = ("registry", "gateway", "backend-openai-compat")
# eleven_multilingual_v2's price in discovery/data/api_models.yaml: $0.10 per 1,000 characters.
USD_PER_CHARACTER = 0.10 / 1000


@pytest.fixture
async def gateway(
    elevenlabs: FakeElevenLabs, make_stack: StackFactory
) -> AsyncIterator[gateway_pb2_grpc.GatewayServiceAsyncStub]:
    config = parse_config(
        f"""
model_system:
  backends:
    elevenlabs:
      api_key: "${{ELEVENLABS_API_KEY}}"
      base_url: "{elevenlabs.url}"
      models: [{NAME}]
      max_retries: 0
""",
        env={"ELEVENLABS_API_KEY": KEY},
    )
    stack = await make_stack(roles=ROLES, config=config)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        yield gateway_pb2_grpc.GatewayServiceStub(channel)


def _request(**params: Any) -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=MODEL, no_cache=True)
    request.input.chat.messages.add(role="system", content="A calm voice.")
    request.input.chat.messages.add(role="user", content=TEXT)
    request.params.voice = VOICE
    for name, value in params.items():
        setattr(request.params, name, value)
    return request


async def test_generate_stream_streams_pcm_pieces_with_usage_on_the_last(
    elevenlabs: FakeElevenLabs, gateway: gateway_pb2_grpc.GatewayServiceAsyncStub
) -> None:
    chunks = [c async for c in gateway.GenerateStream(_request(audio_format="pcm"), timeout=10)]

    audio = [c.output.audio for c in chunks if c.HasField("output")]
    assert len(audio) > 3
    assert {(a.mime_type, a.sample_rate_hz) for a in audio} == {("audio/pcm", 24000)}
    assert b"".join(a.data for a in audio) == elevenlabs.sent[0]
    assert chunks[0].model_id == MODEL
    last = chunks[-1]
    assert last.finish_reason == common_pb2.FINISH_REASON_STOP
    assert last.usage.characters == len(TEXT)
    assert last.usage.cost_usd == pytest.approx(len(TEXT) * USD_PER_CHARACTER)
    assert last.usage.audio_seconds == pytest.approx(len(elevenlabs.sent[0]) / 2 / 24000)
    assert elevenlabs.bodies == [{"text": TEXT, "model_id": NAME}]
    assert elevenlabs.headers[0]["xi-api-key"] == KEY


async def test_generate_returns_the_wav_whole_with_a_true_header(
    elevenlabs: FakeElevenLabs, gateway: gateway_pb2_grpc.GatewayServiceAsyncStub
) -> None:
    response = await gateway.Generate(_request(), timeout=10)

    audio = response.output.audio
    [pcm] = elevenlabs.sent
    assert (audio.mime_type, audio.sample_rate_hz) == ("audio/wav", 24000)
    assert audio.data[:4] == b"RIFF" and audio.data[8:12] == b"WAVE"
    assert struct.unpack("<I", audio.data[4:8])[0] == len(audio.data) - 8
    assert audio.data[36:40] == b"data" and struct.unpack("<I", audio.data[40:44])[0] == len(pcm)
    assert wav_frames(audio.data) == (1, 2, 24000, pcm)
    assert response.finish_reason == common_pb2.FINISH_REASON_STOP
    assert response.usage.characters == len(TEXT)
    assert response.usage.cost_usd == pytest.approx(len(TEXT) * USD_PER_CHARACTER)
    assert response.usage.audio_seconds == pytest.approx(len(pcm) / 48000)
    assert response.text == ""
    assert response.model_id == MODEL


async def test_dropped_parameters_reach_the_caller(
    elevenlabs: FakeElevenLabs, gateway: gateway_pb2_grpc.GatewayServiceAsyncStub
) -> None:
    request = _request(temperature=0.4, drop_unsupported_params=True, audio_format="mp3")
    response = await gateway.Generate(request, timeout=10)
    assert list(response.dropped_params) == ["temperature"]
    assert response.output.audio.mime_type == "audio/mpeg"
    assert response.output.audio.data == elevenlabs.sent[0]
    assert "temperature" not in elevenlabs.bodies[0]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"voice": ""}, "params.voice"),
        ({"audio_format": "ogg"}, "params.audio_format"),
        ({"temperature": 0.9}, "params.temperature"),
        ({"top_k": 3}, "params.top_k"),
    ],
)
async def test_bad_input_is_refused_before_any_upstream_call(
    elevenlabs: FakeElevenLabs,
    gateway: gateway_pb2_grpc.GatewayServiceAsyncStub,
    params: dict[str, Any],
    field: str,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.Generate(_request(**params), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (caught.value.details() or "")
    assert elevenlabs.calls == 0


@pytest.mark.parametrize(
    ("status", "body", "headers", "code"),
    [
        (401, {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}}, {},
         grpc.StatusCode.UNAUTHENTICATED),
        (401, QUOTA_EXCEEDED, {}, grpc.StatusCode.PERMISSION_DENIED),
        (400, detail("voice_not_found", "Voice not found"), {}, grpc.StatusCode.INVALID_ARGUMENT),
        (429, detail("system_busy", "busy"), {"Retry-After": "2"},
         grpc.StatusCode.RESOURCE_EXHAUSTED),
        (500, "Internal Server Error", {}, grpc.StatusCode.UNAVAILABLE),
    ],
)  # fmt: skip
async def test_elevenlabs_failures_reach_the_caller_as_their_codes(
    elevenlabs: FakeElevenLabs,
    gateway: gateway_pb2_grpc.GatewayServiceAsyncStub,
    status: int,
    body: dict[str, Any] | str,
    headers: dict[str, str],
    code: grpc.StatusCode,
) -> None:
    elevenlabs.fail(status, body, headers)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.Generate(_request(), timeout=10)
    assert caught.value.code() == code
    assert "upstream 'elevenlabs'" in (caught.value.details() or "")
    if status == 429:
        assert retry_delay_s(caught.value) == pytest.approx(2.0)


async def test_a_stream_cut_mid_audio_is_aborted(
    elevenlabs: FakeElevenLabs, gateway: gateway_pb2_grpc.GatewayServiceAsyncStub
) -> None:
    elevenlabs.drop_after(2)
    chunks: list[gateway_pb2.GenerateChunk] = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for chunk in gateway.GenerateStream(_request(audio_format="pcm"), timeout=10):
            chunks.append(chunk)
    assert caught.value.code() == grpc.StatusCode.ABORTED
    assert "the speech is truncated" in (caught.value.details() or "")
    assert chunks and all(c.finish_reason == 0 for c in chunks)  # the audio before the cut
