"""Every way an ElevenLabs call fails, as the error the gateway acts on (upstream.py,
speech_stream.py, engine.py)."""

from __future__ import annotations

import pytest
from backends.elevenlabs.calls import NAME, collect, params
from conftest import free_port
from support.fake_elevenlabs import (
    QUOTA_EXCEEDED,
    FakeElevenLabs,
    detail,
    validation_error,
    voice_not_found,
)

from modelyard.backends.elevenlabs import speech_stream
from modelyard.backends.elevenlabs.engine import ElevenLabsEngine
from modelyard.backends.engine import Piece
from modelyard.backends.openai_compat.providers import ProviderEndpoint
from modelyard_client.errors import (
    BackendUnavailable,
    ContextLengthExceeded,
    InvalidRequest,
    ProviderAccessDenied,
    ProviderAuthFailed,
    ProviderError,
    ProviderProtocolError,
    RateLimited,
    StreamTruncated,
)

WHERE = "upstream 'elevenlabs'"


async def test_a_wrong_key_is_the_gateway_s_key_not_the_caller_s(
    elevenlabs: FakeElevenLabs, engine: ElevenLabsEngine
) -> None:
    elevenlabs.api_keys = {"xi-other"}
    with pytest.raises(ProviderAuthFailed) as caught:
        await collect(engine)
    assert type(caught.value) is ProviderAuthFailed
    assert caught.value.message == (
        f"{WHERE} rejected this gateway's API key for ElevenLabs (HTTP 401; not the "
        "caller's credentials) (invalid_api_key): Invalid API key"
    )


async def test_a_spent_quota_is_access_denied(
    elevenlabs: FakeElevenLabs, engine: ElevenLabsEngine
) -> None:
    elevenlabs.fail(401, QUOTA_EXCEEDED)
    with pytest.raises(ProviderAccessDenied) as caught:
        await collect(engine)
    assert "(quota_exceeded): You have insufficient quota" in caught.value.message


async def test_403_is_access_denied(elevenlabs: FakeElevenLabs, engine: ElevenLabsEngine) -> None:
    elevenlabs.fail(403, detail("forbidden", "This key may not use text to speech"))
    with pytest.raises(ProviderAccessDenied):
        await collect(engine)


async def test_an_unknown_voice_is_invalid_naming_params_voice(
    elevenlabs: FakeElevenLabs, engine: ElevenLabsEngine
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await collect(engine, generation=params(voice="nobody"))
    assert caught.value.field == "params.voice"
    assert caught.value.message == (
        f"params.voice: {WHERE} has no such voice (voice_not_found): A voice with voice_id "
        "'nobody' was not found."
    )
    assert elevenlabs.calls == 1


@pytest.mark.parametrize("status", [404, 422])
async def test_voice_not_found_names_the_voice_whatever_its_status(
    elevenlabs: FakeElevenLabs, engine: ElevenLabsEngine, status: int
) -> None:
    elevenlabs.fail(status, voice_not_found("x"))
    with pytest.raises(InvalidRequest) as caught:
        await collect(engine)
    assert caught.value.field == "params.voice"


async def test_a_validation_error_says_where_and_what(
    elevenlabs: FakeElevenLabs, engine: ElevenLabsEngine
) -> None:
    elevenlabs.fail(422, validation_error(["body", "seed"], "ensure this value is >= 0", "gte"))
    with pytest.raises(InvalidRequest) as caught:
        await collect(engine)
    assert type(caught.value) is InvalidRequest
    assert caught.value.message == (
        f"{WHERE} rejected the request (HTTP 422): body.seed: ensure this value is >= 0"
    )


async def test_text_over_the_limit_is_context_length_exceeded(
    elevenlabs: FakeElevenLabs, engine: ElevenLabsEngine
) -> None:
    message = (
        "This request's text has 627 characters and exceeds the character limit of 333 "
        "characters for non signed in accounts."
    )
    elevenlabs.fail(400, detail("max_character_limit_exceeded", message))
    with pytest.raises(ContextLengthExceeded) as caught:
        await collect(engine)
    assert caught.value.provider_code == "max_character_limit_exceeded"
    assert message in caught.value.message


async def test_429_with_retry_after_waits_what_it_says(
    elevenlabs: FakeElevenLabs, engine: ElevenLabsEngine
) -> None:
    elevenlabs.fail(
        429, {"detail": {"status": "too_many_concurrent_requests"}}, {"Retry-After": "4"}
    )
    with pytest.raises(RateLimited) as caught:
        await collect(engine)
    assert caught.value.retry_after_s == 4.0
    assert caught.value.message.startswith(
        f"{WHERE} rate-limited the request (too_many_concurrent_requests); retry after"
    )


async def test_429_without_retry_after_waits_one_second(
    elevenlabs: FakeElevenLabs, engine: ElevenLabsEngine
) -> None:
    elevenlabs.fail(429, detail("system_busy", "The system is busy, please try again later."))
    with pytest.raises(RateLimited) as caught:
        await collect(engine)
    assert caught.value.retry_after_s == 1.0
    assert "(system_busy): The system is busy" in caught.value.message


@pytest.mark.parametrize("status", [500, 503])
async def test_5xx_is_backend_unavailable_with_its_retry_after(
    elevenlabs: FakeElevenLabs, engine: ElevenLabsEngine, status: int
) -> None:
    elevenlabs.fail(status, "Internal Server Error", {"Retry-After": "3"})
    with pytest.raises(BackendUnavailable) as caught:
        await collect(engine)
    assert caught.value.retry_after_s == 3.0
    assert caught.value.message.startswith(f"{WHERE} answered HTTP {status}: Internal Server")


async def test_another_status_is_a_provider_error(
    elevenlabs: FakeElevenLabs, engine: ElevenLabsEngine
) -> None:
    elevenlabs.fail(409, {"detail": "conflict"})
    with pytest.raises(ProviderError) as caught:
        await collect(engine)
    assert type(caught.value) is ProviderError
    assert caught.value.message == f"{WHERE} answered HTTP 409: conflict"


@pytest.mark.parametrize("audio_format", ["pcm", "wav", "mp3"])
async def test_a_stream_cut_mid_body_is_truncated(
    elevenlabs: FakeElevenLabs, engine: ElevenLabsEngine, audio_format: str
) -> None:
    elevenlabs.drop_after(2)
    pieces: list[Piece] = []
    with pytest.raises(StreamTruncated) as caught:
        await collect(engine, generation=params(audio_format=audio_format), pieces=pieces)
    assert caught.value.message.startswith(f"{WHERE} broke off the audio for 'elevenlabs/{NAME}'")
    assert all(p.finish_reason == 0 for p in pieces)  # nothing claimed to be whole
    if audio_format == "pcm":
        assert pieces  # what came before the cut reached the caller


async def test_pcm_ending_mid_sample_is_a_protocol_error(
    elevenlabs: FakeElevenLabs, engine: ElevenLabsEngine
) -> None:
    elevenlabs.odd_tail()
    with pytest.raises(ProviderProtocolError) as caught:
        await collect(engine, generation=params(audio_format="pcm"))
    assert "mid-sample" in caught.value.message


async def test_no_audio_is_a_protocol_error(
    elevenlabs: FakeElevenLabs, engine: ElevenLabsEngine
) -> None:
    elevenlabs.silent()
    with pytest.raises(ProviderProtocolError) as caught:
        await collect(engine)
    assert caught.value.message == f"{WHERE} answered no audio for 'elevenlabs/{NAME}'"


async def test_a_wav_too_big_for_one_answer_is_refused_pointing_at_pcm(
    elevenlabs: FakeElevenLabs, engine: ElevenLabsEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(speech_stream, "MAX_WAV_BYTES", 10_000)
    with pytest.raises(InvalidRequest) as caught:
        await collect(engine)
    assert caught.value.field == "params.audio_format"
    assert "ask for 'pcm' to stream it" in caught.value.message
    assert len(elevenlabs.sent[0]) > 10_000
    await collect(engine, generation=params(audio_format="pcm"))  # streamed: no bound


async def test_an_unreachable_upstream_is_unavailable() -> None:
    engine = ElevenLabsEngine(
        ProviderEndpoint(
            "elevenlabs", f"http://127.0.0.1:{free_port()}/v1", api_key="k", models=(NAME,)
        )
    )
    await engine.start()
    try:
        with pytest.raises(BackendUnavailable) as caught:
            await collect(engine)
    finally:
        await engine.close()
    assert type(caught.value) is BackendUnavailable
    assert caught.value.message.startswith(f"{WHERE} at http://127.0.0.1:")
    assert "is unreachable" in caught.value.message
