"""`modelyard test-provider NAME`: the checks against a real llama.cpp server
(`llama_cpp.server`, Gemma 3 270M, through the openai_compat engine) and against the
Anthropic fake (`support/fake_anthropic.py`), once healthy and once made to fail.
The command reads the configuration file as `serve` does and calls the engine directly.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import free_port
from support.fake_anthropic import API_KEY, FakeAnthropic, error_event, message_events

from modelyard.cli import main

CHECKS = ["list", "generate", "stream", "unknown-model", "context-length", "bad-parameter"]


def _run(
    capsys: pytest.CaptureFixture[str], config: Path, name: str, *flags: str
) -> tuple[int, list[str]]:
    status = main(["test-provider", name, "--config", str(config), *flags])
    return status, capsys.readouterr().out.splitlines()


def _outcomes(lines: list[str]) -> dict[str, str]:
    """Check name -> PASS/FAIL/SKIP, from the printed lines."""
    out = {}
    for line in lines:
        outcome, rest = line.split(" ", 1)
        out[rest.split(":", 1)[0]] = outcome
    return out


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeAnthropic]:
    monkeypatch.setenv("CLAUDE_KEY", API_KEY)  # secrets come from the environment
    server = FakeAnthropic()
    await server.start()
    yield server
    await server.stop()


def _anthropic_config(tmp_path: Path, fake: FakeAnthropic) -> Path:
    path = tmp_path / "modelyard.yaml"
    path.write_text(
        "model_system:\n"
        "  backends:\n"
        "    claude:\n"
        "      kind: anthropic\n"
        "      api_key: '${CLAUDE_KEY}'\n"
        f"      base_url: '{fake.base_url}'\n"
    )
    return path


@pytest.mark.slow
def test_a_real_llama_cpp_server_passes_the_calls_and_fails_what_it_maps_loosely(
    llama_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "modelyard.yaml"
    config.write_text(
        "model_system:\n  backends:\n"
        f"    custom: {{kind: openai_compat, endpoint: '{llama_server}'}}\n"
    )
    status, lines = _run(capsys, config, "custom")
    assert _outcomes(lines) == {
        "list": "PASS",
        "generate": "PASS",
        "stream": "PASS",
        # What the server does, found by the check: serving one model, it answers any
        # model name; it has no context window in /v1/models; and it answers an
        # out-of-range top_p with HTTP 500 (its validation error), which maps to
        # BackendUnavailable as any 500 does, not InvalidRequest.
        "unknown-model": "FAIL",
        "context-length": "SKIP",
        "bad-parameter": "FAIL",
    }, lines
    assert status == 1
    assert lines[0] == "PASS list: 1 models: custom/gemma-3-270m"
    assert lines[2].startswith("PASS stream: first piece after ") and "finish length" in lines[2]
    assert lines[3].startswith("FAIL unknown-model: answered (")
    assert lines[3].endswith("pieces) where ModelNotFound was expected")
    assert "HTTP 500" in lines[5] and "top_p" in lines[5] and "BackendUnavailable" in lines[5]
    assert len(lines) == len(CHECKS)  # one line each, the server's traceback folded in


async def test_every_check_passes_against_the_anthropic_fake(
    fake: FakeAnthropic, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.context_windows = {"claude-haiku-4-5": 200_000, "claude-sonnet-4-5": 200_000}
    status, lines = await _in_thread(capsys, _anthropic_config(tmp_path, fake), "claude")
    assert _outcomes(lines) == dict.fromkeys(CHECKS, "PASS"), lines
    assert status == 0
    assert lines[0].startswith("PASS list: 2 models: claude/")
    assert "finish stop" in lines[2] and "usage" in lines[2]
    assert "ModelNotFound (MODEL_NOT_FOUND)" in lines[3]
    assert "ContextLengthExceeded" in lines[4]
    assert "InvalidRequest" in lines[5] and "top_p" in lines[5]
    sent = [r.body["model"] for r in fake.received]
    assert "modelyard-no-such-model" in sent  # the provider's 404, mapped


async def test_a_provider_failing_its_calls_fails_those_checks_and_the_exit_status(
    fake: FakeAnthropic, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Every answer: an ``error`` event after the 200, as the streaming guide shows one.
    fake.stream([*message_events(("Hel",))[:1], error_event("overloaded_error", "Overloaded")])
    config = _anthropic_config(tmp_path, fake)
    status, lines = await _in_thread(capsys, config, "claude", "--json")
    assert status == 1
    results = {r["check"]: r for r in json.loads("\n".join(lines))}
    assert results["list"]["outcome"] == "PASS"
    for check in ("generate", "stream"):
        assert results[check]["outcome"] == "FAIL"
        assert "Overloaded" in results[check]["detail"], results[check]
    assert results["unknown-model"]["outcome"] == "PASS"  # the 404 comes before any stream


def test_an_unknown_provider_name_is_refused_naming_the_configured_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLAUDE_KEY", API_KEY)
    config = tmp_path / "modelyard.yaml"
    config.write_text(
        "model_system:\n  backends:\n    claude: {kind: anthropic, api_key: '${CLAUDE_KEY}'}\n"
    )
    assert main(["test-provider", "openai", "--config", str(config)]) == 2
    said = capsys.readouterr()
    assert said.out == ""
    assert "no backend 'openai' in the configuration; configured: claude" in said.err


async def _in_thread(
    capsys: pytest.CaptureFixture[str], config: Path, name: str, *flags: str
) -> tuple[int, list[str]]:
    """The command runs its own event loop: off this test's, which serves the fake."""
    import asyncio

    return await asyncio.to_thread(_run, capsys, config, name, *flags)


def test_an_unreachable_provider_fails_its_listing_saying_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "modelyard.yaml"
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    config.write_text(
        f"model_system:\n  backends:\n    dead: {{kind: openai_compat, endpoint: '{endpoint}'}}\n"
    )
    status, lines = _run(capsys, config, "dead")
    assert status == 1
    assert len(lines) == 1 and lines[0].startswith("FAIL list: the engine serves no model (")
    assert "unreachable" in lines[0]
