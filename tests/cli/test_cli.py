"""`modelyard up`, `models` and `generate` as a user runs them, on the real Gemma model."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import openai
import pytest
from conftest import GEMMA_ID, free_port
from grpc_health.v1 import health_pb2, health_pb2_grpc

_PROVIDER_KEYS = (
    "OPENAI_API_KEY",
    "MISTRAL_API_KEY",
    "OPENROUTER_API_KEY",
    "CUSTOM_AI_PROVIDER_URL",
)


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelyard.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def running_up(
    models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, dict[str, str]]]:
    address = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if k not in _PROVIDER_KEYS}
    env.update(
        MODELYARD_ADDRESS=address,
        MODELYARD_HTTP_ADDRESS=f"127.0.0.1:{free_port()}",
        MODELYARD_METRICS_ADDRESS=f"127.0.0.1:{free_port()}",
        MODELYARD_DATA_DIR=str(tmp_path_factory.mktemp("data")),
        MODELYARD_MODELS_DIR=str(models_dir),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelyard.cli", "up", "--grace", "5"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out = proc.stdout
    assert out is not None
    lines: list[str] = []  # every line `up` and its workers write, read as they come

    def read() -> None:
        for line in out:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        with grpc.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + 60
            while True:
                try:
                    if health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                        break
                except grpc.RpcError:
                    pass
                assert proc.poll() is None, "".join(lines)
                assert time.monotonic() < deadline, "modelyard up did not become healthy"
                time.sleep(0.2)
        # Serving once it says so: with a gateway worker per core, after the workers are up.
        for _ in range(600):
            if any(line.startswith("modelyard:   model ") for line in lines):
                break
            assert proc.poll() is None, "".join(lines)
            time.sleep(0.1)
        yield address, env
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        reader.join(timeout=10)
        output = "".join(lines)
        out.close()
        assert code == 0, output
        assert f"on {address}" in output and GEMMA_ID in output
        http = env["MODELYARD_HTTP_ADDRESS"]
        assert f"OpenAI-compatible HTTP API at http://{http}/v1" in output
        assert f"dashboard at http://{http}/dashboard" in output
        assert f"metrics at http://{env['MODELYARD_METRICS_ADDRESS']}/metrics" in output


def test_the_http_edge_serves_gemma_to_the_openai_sdk(
    running_up: tuple[str, dict[str, str]],
) -> None:
    _, env = running_up
    client = openai.OpenAI(
        base_url=f"http://{env['MODELYARD_HTTP_ADDRESS']}/v1", api_key="none", max_retries=0
    )
    answer = client.chat.completions.create(
        model=GEMMA_ID,
        messages=[{"role": "user", "content": "One, two, three, four,"}],
        max_tokens=4,
        temperature=0,
    )
    assert answer.choices[0].message.content and answer.usage is not None
    assert answer.usage.completion_tokens == 4 and answer.choices[0].finish_reason == "length"
    assert GEMMA_ID in [m.id for m in client.models.list()]


def test_models_lists_the_local_gemma(running_up: tuple[str, dict[str, str]]) -> None:
    _, env = running_up
    result = _cli("models", env=env)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith(GEMMA_ID))
    assert "local" in line and "ctx=2048" in line and "healthy" in line


# At temperature 0 Gemma answers greedily, the same every time. These prompts were chosen
# for wide margins: at every step the chosen token leads the runner-up by more than 1.5
# logits, so a different CPU's rounding cannot flip a choice.


def test_generate_streams_the_greedy_continuation_up_to_max_tokens(
    running_up: tuple[str, dict[str, str]],
) -> None:
    _, env = running_up
    result = _cli(
        "generate",
        GEMMA_ID,
        "One, two, three, four,",
        "--max-tokens",
        "8",
        "--temperature",
        "0",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    # Eight tokens (" five", ",", " six", ...): the answer stops at --max-tokens, mid-count.
    assert result.stdout == " five, six, seven, eight,\n"


def test_generate_chat_sends_the_prompt_as_a_user_turn(
    running_up: tuple[str, dict[str, str]],
) -> None:
    _, env = running_up
    result = _cli(
        "generate",
        "--chat",
        GEMMA_ID,
        "Say hello.",
        "--max-tokens",
        "6",
        "--temperature",
        "0",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    # The base model's greedy reply to the gemma chat turn, six tokens (the last two are
    # "user" and a newline: it goes on to write the next turn itself).
    assert result.stdout == "Say hello. mendatanguser\n\n"


def test_generate_unknown_model_names_it(running_up: tuple[str, dict[str, str]]) -> None:
    _, env = running_up
    result = _cli("generate", "local/nope", "hi", env=env)
    assert result.returncode == 1
    assert "'local/nope'" in result.stderr and "NOT_FOUND" in result.stderr


def test_serve_refuses_a_bad_config_with_the_key_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_system:\n  selection:\n    weights: {cost: 3}\n")
    env = {**os.environ, "MODELYARD_DATA_DIR": str(tmp_path)}
    result = _cli("serve", "registry", "--config", str(bad), "--listen", "127.0.0.1:0", env=env)
    assert result.returncode == 2  # a start-up mistake
    assert "model_system.selection.weights.cost" in result.stderr
    assert "Traceback" not in result.stderr
