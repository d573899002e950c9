"""OpenAI's media endpoints through a real stack (registry, gateway, the `openai` backend) in
front of `media_fake.FakeOpenAIMedia`: images made, speech spoken, audio transcribed, bad
input refused before any upstream call, the upstream's failures mapped."""

from __future__ import annotations

import asyncio
import io
import wave
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from backends.openai_compat.media_fake import (
    DURATION_S,
    KEY,
    PCM_RATE_HZ,
    PNG,
    FakeOpenAIMedia,
    openai_error,
)
from conftest import StackFactory
from support.grpc_trailers import retry_delay_s

from modelyard.backends.openai_compat.engine import OpenAICompatEngine
from modelyard.backends.openai_compat.media import IMAGES, SPEECH, TRANSCRIPTION, media_kind
from modelyard.backends.openai_compat.providers import ProviderEndpoint
from modelyard.config import parse_config
from modelyard.discovery.openai_compat import OpenAICompatSource
from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
)

C = common_pb2
NO_PARAMS = common_pb2.GenerationParams()
ROLES = ("registry", "gateway", "backend-openai-compat")
TEXT = "The first move is what sets everything in motion."
MODELS = ("gpt-image-1", "dall-e-3", "tts-1", "whisper-1", "gpt-4o-transcribe")


def _config(url: str, models: tuple[str, ...] = MODELS) -> Any:
    return parse_config(
        f"""
model_system:
  backends:
    openai:
      api_key: "${{OPENAI_API_KEY}}"
      base_url: "{url}/v1"
      models: [{", ".join(models)}]
      max_retries: 0
""",
        env={"OPENAI_API_KEY": KEY},
    )


@pytest.fixture
async def media() -> AsyncIterator[FakeOpenAIMedia]:
    fake = FakeOpenAIMedia()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def gateway(
    media: FakeOpenAIMedia, make_stack: StackFactory
) -> AsyncIterator[gateway_pb2_grpc.GatewayServiceAsyncStub]:
    # Discovery on: the registry's api source lists the models with the catalog's prices.
    stack = await make_stack(roles=ROLES, config=_config(media.url), discovery=True)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        registry = registry_pb2_grpc.RegistryServiceStub(channel)
        for model in MODELS:
            for _ in range(100):
                entry = await registry.GetModel(registry_pb2.GetModelRequest(id=f"openai/{model}"))
                if entry.cost != common_pb2.CostProfile() and entry.deployments:
                    break
                await asyncio.sleep(0.05)
            assert entry.deployments and entry.cost != common_pb2.CostProfile(), model
        yield gateway_pb2_grpc.GatewayServiceStub(channel)


def _request(model: str, text: str = TEXT, **params: Any) -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=f"openai/{model}" if model else "", no_cache=True)
    request.input.text = text
    for name, value in params.items():
        setattr(request.params, name, value)
    return request


def _wav(seconds: float = 0.5) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16_000)
        out.writeframes(bytes(int(seconds * 16_000) * 2))
    return buffer.getvalue()


def _audio_request(model: str, **params: Any) -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=f"openai/{model}", no_cache=True)
    request.input.audio.data = _wav()
    request.input.audio.mime_type = "audio/wav"
    for name, value in params.items():
        setattr(request.params, name, value)
    return request


def test_names_say_which_endpoint_a_model_takes() -> None:
    assert [media_kind(n) for n in ("gpt-image-1", "dall-e-3", "openai/dall-e-2")] == [IMAGES] * 3
    assert [media_kind(n) for n in ("tts-1-hd", "gpt-4o-mini-tts")] == [SPEECH] * 2
    assert [media_kind(n) for n in ("whisper-1", "gpt-4o-mini-transcribe")] == [TRANSCRIPTION] * 2
    assert [media_kind(n) for n in ("gpt-4o-mini", "gpt-5", "text-embedding-3-small")] == [None] * 3


# ---- images -----------------------------------------------------------------------------


async def test_a_gpt_image_comes_back_whole_with_its_token_usage_and_cost(
    media: FakeOpenAIMedia, gateway: gateway_pb2_grpc.GatewayServiceAsyncStub
) -> None:
    response = await gateway.Generate(_request("gpt-image-1"), timeout=10)

    [image] = response.output.images
    assert (image.data, image.mime_type) == (PNG, "image/png")
    assert media.bodies == [{"model": "gpt-image-1", "prompt": TEXT}]  # no response_format
    assert media.paths == ["/v1/images/generations"]
    assert media.headers[0]["Authorization"] == f"Bearer {KEY}"
    usage = response.usage
    assert (usage.images, usage.input_tokens, usage.output_tokens) == (1, 12, 272)
    assert usage.cost_usd == pytest.approx(12 * 5e-6 + 272 * 40e-6)
    assert response.finish_reason == common_pb2.FINISH_REASON_STOP


async def test_dall_e_is_asked_for_base64_and_priced_per_image(
    media: FakeOpenAIMedia, gateway: gateway_pb2_grpc.GatewayServiceAsyncStub
) -> None:
    request = _request("")
    request.model = "openai/dall-e-3"
    request.input.chat.messages.add(role="system", content="Be bold.")
    request.input.chat.messages.add(role="user", content="A red kite over hills")
    response = await gateway.Generate(request, timeout=10)

    assert media.bodies == [
        {"model": "dall-e-3", "prompt": "A red kite over hills", "response_format": "b64_json"}
    ]
    assert response.output.images[0].data == PNG
    assert response.usage.images == 1
    assert response.usage.cost_usd == pytest.approx(0.04)


# ---- speech -----------------------------------------------------------------------------


async def test_pcm_speech_streams_in_whole_samples_with_usage_on_the_last_chunk(
    media: FakeOpenAIMedia, gateway: gateway_pb2_grpc.GatewayServiceAsyncStub
) -> None:
    request = _request("tts-1", voice="alloy", audio_format="pcm")
    chunks = [c async for c in gateway.GenerateStream(request, timeout=10)]

    audio = [c.output.audio for c in chunks if c.HasField("output")]
    assert len(audio) > 3  # streamed as it came, not gathered
    assert {(a.mime_type, a.sample_rate_hz) for a in audio} == {("audio/pcm", PCM_RATE_HZ)}
    assert all(len(a.data) % 2 == 0 for a in audio)  # the fake's odd chunks re-cut
    assert b"".join(a.data for a in audio) == media.sent[0]
    assert media.bodies == [
        {"model": "tts-1", "input": TEXT, "voice": "alloy", "response_format": "pcm"}
    ]
    last = chunks[-1]
    assert last.finish_reason == common_pb2.FINISH_REASON_STOP
    assert last.usage.characters == len(TEXT)
    assert last.usage.audio_seconds == pytest.approx(len(media.sent[0]) / 2 / PCM_RATE_HZ)
    assert last.usage.cost_usd == pytest.approx(len(TEXT) * 0.015 / 1000)


async def test_wav_speech_comes_whole_from_generate_with_a_true_header(
    media: FakeOpenAIMedia, gateway: gateway_pb2_grpc.GatewayServiceAsyncStub
) -> None:
    response = await gateway.Generate(_request("tts-1", voice="nova"), timeout=10)

    audio = response.output.audio
    assert (audio.mime_type, audio.sample_rate_hz) == ("audio/wav", PCM_RATE_HZ)
    with wave.open(io.BytesIO(audio.data), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 24_000)
        assert wav.readframes(wav.getnframes()) == media.sent[0]
    assert media.bodies[0]["response_format"] == "pcm"  # wrapped here, header and all


async def test_mp3_speech_streams_as_audio_mpeg(
    media: FakeOpenAIMedia, gateway: gateway_pb2_grpc.GatewayServiceAsyncStub
) -> None:
    request = _request("tts-1", voice="echo", audio_format="mp3")
    chunks = [c async for c in gateway.GenerateStream(request, timeout=10)]

    audio = [c.output.audio for c in chunks if c.HasField("output")]
    assert {a.mime_type for a in audio} == {"audio/mpeg"}
    assert b"".join(a.data for a in audio) == media.sent[0]
    assert media.bodies[0]["response_format"] == "mp3"


async def test_speech_cut_mid_stream_is_truncated_not_finished(
    media: FakeOpenAIMedia, gateway: gateway_pb2_grpc.GatewayServiceAsyncStub
) -> None:
    media.drop_after(2)
    request = _request("tts-1", voice="alloy", audio_format="pcm")
    received: list[gateway_pb2.GenerateChunk] = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for chunk in gateway.GenerateStream(request, timeout=10):
            received.append(chunk)
    assert caught.value.code() == grpc.StatusCode.ABORTED
    assert "truncated" in (caught.value.details() or "")
    assert not any(c.finish_reason for c in received)


# ---- transcription ----------------------------------------------------------------------


async def test_whisper_transcribes_with_segments_and_the_audio_s_duration(
    media: FakeOpenAIMedia, gateway: gateway_pb2_grpc.GatewayServiceAsyncStub
) -> None:
    response = await gateway.Generate(_audio_request("whisper-1", temperature=0.2), timeout=10)

    assert response.text == "The first move is what sets everything in motion."
    segments = [(s.start_s, s.end_s, s.text) for s in response.output.segments]
    assert segments == [
        (0.0, 1.5, "The first move"),
        (1.5, 3.25, " is what sets everything in motion."),
    ]
    assert response.usage.audio_seconds == pytest.approx(DURATION_S)
    assert response.usage.cost_usd == pytest.approx(DURATION_S * 0.36 / 3600)
    [fields] = media.bodies
    assert fields == {
        "file": ("audio.wav", "audio/wav", _wav()),
        "model": "whisper-1",
        "response_format": "verbose_json",
        "timestamp_granularities[]": ["segment"],
        "temperature": "0.2",
    }


async def test_gpt_4o_transcribe_is_asked_for_json_and_billed_by_tokens(
    media: FakeOpenAIMedia, gateway: gateway_pb2_grpc.GatewayServiceAsyncStub
) -> None:
    response = await gateway.Generate(_audio_request("gpt-4o-transcribe"), timeout=10)

    assert response.text == "The first move is what sets everything in motion."
    assert not response.output.segments
    assert (response.usage.input_tokens, response.usage.output_tokens) == (40, 11)
    fields = media.bodies[0]
    assert (fields["model"], fields["response_format"]) == ("gpt-4o-transcribe", "json")
    assert "timestamp_granularities[]" not in fields


# ---- refused before any upstream call ---------------------------------------------------


@pytest.mark.parametrize(
    ("request_for", "problem"),
    [
        (lambda: _audio_request("tts-1", voice="alloy"), "does not take MODALITY_AUDIO input"),
        (lambda: _audio_request("gpt-image-1"), "does not take MODALITY_AUDIO input"),
        (lambda: _request("whisper-1"), "does not take MODALITY_TEXT input"),
        (
            lambda: _request("tts-1", voice="alloy", audio_format="ogg"),
            "params.audio_format 'ogg' is not one",
        ),
        (lambda: _request("tts-1"), "params.voice: OpenAI model tts-1 needs a voice"),
        (
            lambda: _request("tts-1", voice="alloy", temperature=0.5),
            "params.temperature is not supported by model 'openai/tts-1'",
        ),
        (
            lambda: _request("gpt-image-1", seed=7),
            "params.seed is not supported by model 'openai/gpt-image-1'",
        ),
        (
            lambda: _audio_request("whisper-1", temperature=1.5),
            "params.temperature 1.5: OpenAI transcription takes 0 to 1",
        ),
        (
            lambda: _request("tts-1", "x" * 4097, voice="alloy"),
            "input.text has 4,097 characters",
        ),
    ],
)
async def test_bad_input_is_refused_naming_the_field_before_any_upstream_call(
    media: FakeOpenAIMedia,
    gateway: gateway_pb2_grpc.GatewayServiceAsyncStub,
    request_for: Any,
    problem: str,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.Generate(request_for(), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert problem in (caught.value.details() or "")
    assert media.paths == []


async def test_a_dropped_parameter_is_left_out_and_listed(
    media: FakeOpenAIMedia, gateway: gateway_pb2_grpc.GatewayServiceAsyncStub
) -> None:
    request = _request("tts-1", voice="alloy", temperature=0.5, drop_unsupported_params=True)
    response = await gateway.Generate(request, timeout=10)

    assert list(response.dropped_params) == ["temperature"]
    assert "temperature" not in media.bodies[0]
    assert response.output.audio.mime_type == "audio/wav"


# ---- the upstream's failures ------------------------------------------------------------


async def test_a_400_is_invalid_argument_with_openai_s_message(
    media: FakeOpenAIMedia, gateway: gateway_pb2_grpc.GatewayServiceAsyncStub
) -> None:
    media.fail(400, openai_error("Invalid 'size'.", "invalid_request_error", "size"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.Generate(_request("gpt-image-1"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Invalid 'size'." in (caught.value.details() or "")


async def test_a_content_policy_400_is_content_rejected(
    media: FakeOpenAIMedia, gateway: gateway_pb2_grpc.GatewayServiceAsyncStub
) -> None:
    body = openai_error(
        "Your request was rejected by the safety system.",
        "invalid_request_error",
        code="content_policy_violation",
    )
    media.fail(400, body)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.Generate(_request("dall-e-3"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "safety system" in (caught.value.details() or "")


@pytest.mark.parametrize(("headers", "delay_s"), [({"retry-after": "7"}, 7.0), ({}, 1.0)])
async def test_a_429_is_resource_exhausted_with_its_retry_delay(
    media: FakeOpenAIMedia,
    gateway: gateway_pb2_grpc.GatewayServiceAsyncStub,
    headers: dict[str, str],
    delay_s: float,
) -> None:
    body = openai_error("Rate limit reached for requests", "requests", code="rate_limit_exceeded")
    media.fail(429, body, headers)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.Generate(_request("tts-1", voice="alloy"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert retry_delay_s(caught.value) == pytest.approx(delay_s)


async def test_a_500_is_unavailable(
    media: FakeOpenAIMedia, gateway: gateway_pb2_grpc.GatewayServiceAsyncStub
) -> None:
    media.fail(500, openai_error("The server had an error.", "server_error"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.Generate(_audio_request("whisper-1"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "HTTP 500" in (caught.value.details() or "")


# ---- selection --------------------------------------------------------------------------


async def test_a_speech_task_without_a_model_picks_the_one_tts_model(
    media: FakeOpenAIMedia, make_stack: StackFactory
) -> None:
    stack = await make_stack(roles=ROLES, config=_config(media.url, ("tts-1", "gpt-image-1")))
    async with grpc.aio.insecure_channel(stack.address) as channel:
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        response = await gateway.Generate(_request("", voice="alloy"), timeout=10)
    assert response.model_id == "openai/tts-1"
    assert response.output.audio.mime_type == "audio/wav"


# ---- the engine on its own --------------------------------------------------------------


async def test_the_engine_announces_each_media_model_s_shape_and_checks_its_input(
    media: FakeOpenAIMedia,
) -> None:
    engine = OpenAICompatEngine(ProviderEndpoint("openai", f"{media.url}/v1", api_key=KEY))
    await engine.start()  # its names from GET /models
    try:
        entries = {e.name: e for e in engine.models()}
        assert list(entries["gpt-image-1"].capabilities) == [C.CAPABILITY_IMAGE_GENERATION]
        assert list(entries["gpt-image-1"].output_modalities) == [C.MODALITY_IMAGE]
        assert list(entries["tts-1"].output_modalities) == [C.MODALITY_AUDIO]
        assert list(entries["whisper-1"].input_modalities) == [C.MODALITY_AUDIO]
        assert list(entries["whisper-1"].capabilities) == [C.CAPABILITY_SPEECH_TO_TEXT]

        chat = common_pb2.Input()
        chat.chat.messages.add(role="user").parts.add().image.data = PNG
        with pytest.raises(InvalidRequest) as caught:
            async for _ in engine.infer_stream("openai/tts-1", chat, NO_PARAMS):
                pass
        assert caught.value.field == "input.chat.messages[0].parts[0]"
        with pytest.raises(InvalidRequest) as caught:
            text = common_pb2.Input(text=TEXT)
            async for _ in engine.infer_stream(
                "openai/whisper-1", text, common_pb2.GenerationParams()
            ):
                pass
        assert caught.value.field == "input"
        audio = common_pb2.Input(audio=common_pb2.Audio(data=b"not audio at all"))
        with pytest.raises(InvalidRequest) as caught:
            async for _ in engine.infer_stream(
                "openai/whisper-1", audio, common_pb2.GenerationParams()
            ):
                pass
        assert caught.value.field == "input.audio.data"
        assert media.paths == []
    finally:
        await engine.close()


async def test_discovery_of_a_compatible_endpoint_names_media_models_by_the_same_rule(
    media: FakeOpenAIMedia,
) -> None:
    source = OpenAICompatSource(ProviderEndpoint("custom", f"{media.url}/v1", api_key=KEY))
    entries = {e.name: e for e in (await source.discover()).entries}
    assert list(entries["dall-e-3"].capabilities) == [C.CAPABILITY_IMAGE_GENERATION]
    assert list(entries["gpt-4o-mini-tts"].output_modalities) == [C.MODALITY_AUDIO]
    assert list(entries["gpt-4o-transcribe"].input_modalities) == [C.MODALITY_AUDIO]
