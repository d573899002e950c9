"""Fixtures for the bedrock engine: test AWS credentials, a fake Bedrock, an engine on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.fake_bedrock import ACCESS_KEY_ID, MODELS, REGION, SECRET_ACCESS_KEY, FakeBedrock

from modelyard.backends.bedrock.engine import BedrockEngine
from modelyard.config import BedrockBackend


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The test credentials in the environment, and nothing of this machine's AWS setup:
    no config or credentials file, no profile, no instance metadata service."""
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)


@pytest.fixture
async def bedrock() -> AsyncIterator[FakeBedrock]:
    fake = FakeBedrock()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def engine(bedrock: FakeBedrock) -> AsyncIterator[BedrockEngine]:
    """A started engine on the fake, serving its two models, signing for its region."""
    started = BedrockEngine(
        "bedrock", BedrockBackend(region=REGION, endpoint=bedrock.url, models=MODELS)
    )
    await started.start()
    yield started
    await started.close()
