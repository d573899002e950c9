"""The credentials the bedrock engine signs with: read once, refreshed near their expiry."""

from __future__ import annotations

import datetime
from typing import Any

from botocore.credentials import RefreshableCredentials
from support.fake_bedrock import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY

from modelyard.backends.bedrock.signing import RequestSigner
from modelyard_client.scrub import MARKER, scrub


def _metadata(n: int, expires_in: datetime.timedelta) -> dict[str, Any]:
    expiry = datetime.datetime.now(datetime.UTC) + expires_in
    return {
        "access_key": f"AKIDROTATED{n:09d}",
        "secret_key": f"rotated-secret-{n}-0123456789abcdefghij",
        "token": f"rotated-session-token-{n}",
        "expiry_time": expiry.isoformat(),
    }


async def test_the_environment_credentials_are_read_once_at_start() -> None:
    signer = RequestSigner("bedrock", REGION)
    await signer.resolve()
    current = await signer.current()
    assert (current.access_key, current.secret_key, current.token) == (
        ACCESS_KEY_ID,
        SECRET_ACCESS_KEY,
        None,
    )


async def test_temporary_credentials_near_expiry_are_refreshed_before_signing() -> None:
    refreshes: list[int] = []

    def refresh() -> dict[str, Any]:
        refreshes.append(1)
        return _metadata(len(refreshes), datetime.timedelta(hours=1))

    # Two minutes left: inside botocore's mandatory refresh window (10 minutes).
    credentials = RefreshableCredentials.create_from_metadata(
        _metadata(0, datetime.timedelta(minutes=2)), refresh, "assume-role"
    )
    signer = RequestSigner("bedrock", REGION, credentials=credentials)
    first = await signer.current()
    assert first.access_key == "AKIDROTATED000000001"
    assert first.token == "rotated-session-token-1"
    second = await signer.current()
    assert second == first and refreshes == [1]  # an hour left: no second refresh


async def test_the_secret_and_token_signed_with_are_scrubbed_from_any_text() -> None:
    credentials = RefreshableCredentials.create_from_metadata(
        _metadata(7, datetime.timedelta(hours=1)),
        lambda: _metadata(8, datetime.timedelta(hours=1)),
        "assume-role",
    )
    signer = RequestSigner("bedrock", REGION, credentials=credentials)
    current = await signer.current()
    assert current.secret_key is not None and current.token is not None
    assert scrub(f"echo {current.secret_key} and {current.token}") == f"echo {MARKER} and {MARKER}"


async def test_signing_adds_the_date_token_and_authorization_headers() -> None:
    credentials = RefreshableCredentials.create_from_metadata(
        _metadata(3, datetime.timedelta(hours=1)),
        lambda: _metadata(4, datetime.timedelta(hours=1)),
        "assume-role",
    )
    signer = RequestSigner("bedrock", "eu-central-1", credentials=credentials)
    url = "https://bedrock-runtime.eu-central-1.amazonaws.com/model/x%3A0/converse-stream"
    headers = await signer.headers(url, b"{}", "application/vnd.amazon.eventstream")
    assert headers["X-Amz-Security-Token"] == "rotated-session-token-3"
    assert headers["Authorization"].startswith(
        f"AWS4-HMAC-SHA256 Credential=AKIDROTATED000000003/{headers['X-Amz-Date'][:8]}"
        "/eu-central-1/bedrock/aws4_request, SignedHeaders=accept;content-type;host;"
        "x-amz-date;x-amz-security-token, Signature="
    )
