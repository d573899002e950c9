"""What a catalog id and a version may hold: real ids pass, path tricks and control
characters do not, each refusal saying why."""

from __future__ import annotations

import pytest

from modelyard.catalog_ids import catalog_id_problem, version_problem
from modelyard.hosted_catalog import load_catalog
from modelyard.registry.validation import check_entry

REAL_IDS = [
    "ollama/gemma3:4b",
    "openrouter/meta-llama/llama-3.1-8b-instruct:free",
    "local/gemma-3-270m-q4_k_m",
    "vllm/Qwen/Qwen3-8B",
    "vllm//models/llama-3",  # vLLM names a model by the path it was started with
    "bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0",
    "openai-eu/gpt-4o-mini",
    "hf/TheBloke/Mistral-7B-Instruct-v0.2-GGUF@q4_k_m",
]


@pytest.mark.parametrize("model_id", REAL_IDS)
def test_real_ids_are_valid(model_id: str) -> None:
    assert catalog_id_problem(model_id) is None


def test_every_hosted_model_of_the_data_file_has_a_valid_id() -> None:
    for provider in load_catalog().providers.values():
        for entry in provider.entries:
            check_entry(entry)


@pytest.mark.parametrize(
    ("model_id", "problem"),
    [
        ("a/../../etc/passwd", "the model name has a '..' segment"),
        ("a/b/./c", "the model name has a '.' segment"),
        ("a/..", "the model name has a '..' segment"),
        ("a/b\0", "the model name holds '\\x00' (U+0000)"),
        ("a/b\nc", "the model name holds '\\n' (U+000A)"),
        ("a/b c", "the model name holds ' ' (U+0020)"),
        ("a/b\\..\\c", "the model name holds '\\\\' (U+005C)"),
        ("a/evil\u202etxt", "the model name holds '\\u202e' (U+202E)"),  # right-to-left override
        ("a/", "the model name is empty"),
        ("gemma3", "it has no '/' between the backend and the model name"),
        ("/m", "the backend name is empty"),
        (
            "Ollama/m",
            "the backend name 'Ollama' is not 1-63 characters of a-z 0-9 . _ -, "
            "starting with a letter or digit",
        ),
        ("b" * 64 + "/m", "the backend name is 64 characters, over 63"),
        ("b/" + "m" * 254, "it is 256 characters, over 255"),
    ],
)
def test_hostile_ids_are_refused_saying_why(model_id: str, problem: str) -> None:
    assert catalog_id_problem(model_id) == problem


@pytest.mark.parametrize(
    ("version", "problem"),
    [
        ("1.2.3", None),
        ("2024-05-13", None),
        ("sha256:" + "0" * 64, None),
        ("v1.0+build.7", None),
        ("../../x\0", "holds '\\x00' (U+0000)"),
        ("..", "it is '..'"),
        (".", "it is '.'"),
        ("1/2", "it holds '/'"),
        ("1.0 beta", "holds ' ' (U+0020)"),
        ("v" * 129, "it is 129 characters, over 128"),
    ],
)
def test_versions(version: str, problem: str | None) -> None:
    assert version_problem(version) == problem
