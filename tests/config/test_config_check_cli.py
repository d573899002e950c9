"""`modelyard config check FILE` as an operator runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _check(path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    return subprocess.run(
        [sys.executable, "-m", "modelyard.cli", "config", "check", str(path)],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_valid_file_prints_ok_and_a_summary(tmp_path: Path) -> None:
    path = tmp_path / "modelyard.yaml"
    path.write_text(
        "model_system:\n"
        "  backends:\n"
        "    ollama: {models: [gemma3:4b, llama3:8b]}\n"
        "    openai: {api_key: '${OPENAI_API_KEY}', models: [gpt-4-turbo]}\n"
        "    mistral: {api_key: '${MISTRAL_API_KEY:-}'}\n"
    )
    done = _check(path, OPENAI_API_KEY="sk-test")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"{path}: ok"
    assert "backends enabled: ollama (ollama), openai (openai)" in lines[1]
    assert "backends off: mistral (api_key is empty)" in lines[2]
    assert "models listed: 3 (ollama/gemma3:4b, ollama/llama3:8b, openai/gpt-4-turbo)" in lines[3]
    assert "sk-test" not in done.stdout


def test_an_invalid_file_prints_every_problem_and_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "model_system:\n"
        "  backends:\n"
        "    openai: {api_key: '${OPENAI_API_KEY}'}\n"
        "  selection:\n"
        "    wieghts: {cost: 1}\n"
    )
    done = _check(path)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"{path}: 2 problem(s)",
        f"{path}:3: model_system.backends.openai.api_key: environment variable OPENAI_API_KEY "
        "is not set (set it, or write ${OPENAI_API_KEY:-} to make it optional)",
        f"{path}:5: model_system.selection.wieghts: unknown key (did you mean 'weights'?)",
    ]


def test_a_yaml_syntax_error_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("model_system: {backends: [\n")
    done = _check(path)
    assert done.returncode == 1
    assert "YAML syntax error at line 2" in done.stderr


def test_a_missing_file_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    done = _check(path)
    assert done.returncode == 2
    assert done.stderr.strip() == f"modelyard: cannot read {path}: No such file or directory"
