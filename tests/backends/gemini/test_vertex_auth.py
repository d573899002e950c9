"""Vertex AI through the gemini engine: the regional path, and the OAuth2 access token that
google-auth gets by signing a JWT with the service account's key.

The fake's token endpoint checks the JWT's RS256 signature against the public key of the
freshly generated key (`write_service_account`) and its claims; the fake's model paths take
only a token it issued. google-auth's HTTP call is synchronous: were it made on the event
loop, the fake (on the same loop) could never answer it and these tests would hang.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from backends.gemini.gemini_engines import VERTEX_ID, collect, vertex_engine
from support.fake_gemini import (
    AUDIENCE,
    MODEL,
    PROJECT,
    REGION,
    SCOPE,
    FakeGemini,
    response,
    write_service_account,
)

from modelyard.backends.gemini import GeminiEngine, vertex_models_url
from modelyard_client.errors import BackendUnavailable, ModelNotFound, ProviderAuthFailed
from modelyard_client.v1 import common_pb2

DONE = [response("Bonjour", finish="STOP", usage=(5, 1))]
VERTEX_PATH = f"/v1/projects/{PROJECT}/locations/{REGION}/publishers/google/models/{MODEL}"


async def test_a_call_goes_to_the_regional_path_with_the_issued_bearer_token(
    fake: FakeGemini, vertex: GeminiEngine
) -> None:
    fake.stream(DONE)
    pieces = await collect(vertex, model_id=VERTEX_ID)

    assert "".join(p.text for p in pieces) == "Bonjour"
    assert pieces[-1].finish_reason == common_pb2.FINISH_REASON_STOP
    [call] = fake.calls
    assert call.path == f"{VERTEX_PATH}:streamGenerateContent"
    assert call.query == {"alt": "sse"}
    assert fake.issued == ["ya29.fake-access-token-1"]
    assert call.headers["Authorization"] == "Bearer ya29.fake-access-token-1"
    assert "x-goog-api-key" not in call.headers
    assert call.body == {"contents": [{"role": "user", "parts": [{"text": "Hello there"}]}]}


async def test_the_jwt_assertion_names_the_account_the_scope_and_the_token_uri(
    fake: FakeGemini, vertex: GeminiEngine
) -> None:
    [claims] = fake.grants  # got at start, to report bad credentials early
    assert claims["iss"] == f"modelyard-test@{PROJECT}.iam.gserviceaccount.com"
    assert claims["scope"] == SCOPE
    assert claims["aud"] == AUDIENCE
    assert claims["exp"] - claims["iat"] == 3600


async def test_a_valid_token_is_reused(fake: FakeGemini, vertex: GeminiEngine) -> None:
    fake.stream(DONE)
    await collect(vertex, model_id=VERTEX_ID)
    await collect(vertex, model_id=VERTEX_ID)
    assert len(fake.grants) == 1
    assert {c.headers["Authorization"] for c in fake.calls} == {"Bearer ya29.fake-access-token-1"}


async def test_an_expired_token_is_refreshed_before_the_call(
    fake: FakeGemini, tmp_path: Path
) -> None:
    # google-auth counts a token expired a few minutes before its expiry: one of 60 s
    # is expired as soon as it is issued, so every call gets a new one.
    fake.token_lifetime_s = 60
    fake.stream(DONE)
    engine = vertex_engine(fake, write_service_account(tmp_path, fake))
    await engine.start()
    try:
        await collect(engine, model_id=VERTEX_ID)
        await collect(engine, model_id=VERTEX_ID)
    finally:
        await engine.close()
    assert fake.issued == [f"ya29.fake-access-token-{n}" for n in (1, 2, 3)]
    assert [c.headers["Authorization"] for c in fake.calls] == [
        "Bearer ya29.fake-access-token-2",
        "Bearer ya29.fake-access-token-3",
    ]


async def test_a_key_the_token_endpoint_does_not_trust_is_refused_before_any_model_call(
    fake: FakeGemini, tmp_path: Path
) -> None:
    engine = vertex_engine(fake, write_service_account(tmp_path, fake, trusted=False))
    await engine.start()
    try:
        health = engine.health()
        with pytest.raises(ProviderAuthFailed) as caught:
            await collect(engine, model_id=VERTEX_ID)
    finally:
        await engine.close()
    assert health.status == common_pb2.HEALTH_STATUS_UNHEALTHY
    assert "token endpoint refused" in health.reason
    message = caught.value.message
    assert "refused this gateway's Vertex AI service-account credentials" in message
    assert "invalid_grant" in message and "Invalid JWT Signature" in message
    assert "PRIVATE KEY" not in message
    assert fake.calls == [] and fake.grants == []


async def test_a_token_the_model_endpoint_refuses_is_provider_auth_failed(
    fake: FakeGemini, vertex: GeminiEngine
) -> None:
    fake.expire_tokens()  # revoked on the server; google-auth still holds it as valid
    fake.stream(DONE)
    with pytest.raises(ProviderAuthFailed) as caught:
        await collect(vertex, model_id=VERTEX_ID)
    message = caught.value.message
    assert "rejected this gateway's Vertex AI service-account credentials (HTTP 401" in message
    assert "UNAUTHENTICATED: Request had invalid authentication credentials" in message


async def test_a_credentials_file_that_is_not_one_is_reported_with_its_path(
    fake: FakeGemini, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"type": "service_account", "client_email": "x@y"}))
    engine = vertex_engine(fake, broken)
    await engine.start()
    try:
        assert engine.health().status == common_pb2.HEALTH_STATUS_UNHEALTHY
        with pytest.raises(ProviderAuthFailed) as caught:
            await collect(engine, model_id=VERTEX_ID)
    finally:
        await engine.close()
    assert f"could not load its Vertex AI service-account credentials from '{broken}'" in (
        caught.value.message
    )
    assert fake.calls == []


async def test_an_unreachable_token_endpoint_is_backend_unavailable(
    fake: FakeGemini, tmp_path: Path
) -> None:
    key_file = write_service_account(tmp_path, fake)
    engine = vertex_engine(fake, key_file)
    await fake.stop()
    try:
        await engine.start()
        with pytest.raises(BackendUnavailable) as caught:
            await collect(engine, model_id=VERTEX_ID)
    finally:
        await engine.close()
    assert "the token endpoint of its Vertex AI service-account credentials is unreachable" in (
        caught.value.message
    )


async def test_a_model_vertex_does_not_publish_is_model_not_found(
    fake: FakeGemini, vertex: GeminiEngine
) -> None:
    with pytest.raises(ModelNotFound) as caught:
        await collect(vertex, model_id="vertex/gemini-9-ultra")
    assert "Publisher Model" in caught.value.message


def test_the_public_endpoint_is_the_regions_and_global_has_none_in_the_host() -> None:
    assert vertex_models_url("p", "us-central1", None) == (
        "https://us-central1-aiplatform.googleapis.com",
        "https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us-central1"
        "/publishers/google/models",
    )
    assert vertex_models_url("p", "global", None)[0] == "https://aiplatform.googleapis.com"
    assert vertex_models_url("p/../q", "r", "http://h/")[1] == (
        "http://h/v1/projects/p%2F..%2Fq/locations/r/publishers/google/models"
    )
