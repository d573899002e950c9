"""GGUF discovery: the real Gemma file, small files written here, corrupt ones."""

from __future__ import annotations

import time
from pathlib import Path

import gguf
import numpy as np
import pytest
from conftest import GEMMA_ID

from modelyard.backends.local.model_files import model_id_for
from modelyard.discovery import GGUFDirectorySource
from modelyard.discovery.gguf_files import gguf_entry
from modelyard_client.errors import BackendUnavailable
from modelyard_client.v1 import common_pb2 as C


def write_gguf(
    path: Path, arch: str = "llama", *, chat_template: bool = False, embedding: bool = False
) -> Path:
    """A small but valid GGUF file: a few metadata keys and one tensor."""
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(path.stem)
    w.add_context_length(4096)
    w.add_block_count(2)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_embedding_length(64)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    if chat_template:
        w.add_chat_template("{% for m in messages %}{{ m.content }}{% endfor %}")
    if embedding:
        w.add_pooling_type(gguf.PoolingType.MEAN)
    w.add_tensor("token_embd.weight", np.zeros((8, 64), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def mixed_directory(tmp_path: Path, gemma_path: Path) -> int:
    """Gemma (linked), a small good file, corrupt ones and a non-model; returns Gemma's size."""
    (tmp_path / gemma_path.name).symlink_to(gemma_path)
    (tmp_path / "garbage.gguf").write_bytes(b"definitely not gguf" * 10)
    (tmp_path / "empty.gguf").write_bytes(b"")
    good = write_gguf(tmp_path / "Tiny Chat.gguf", chat_template=True)
    (tmp_path / "cut.gguf").write_bytes(good.read_bytes()[:-100])  # tensor data cut short
    (tmp_path / "notes.txt").write_text("not a model")
    return gemma_path.stat().st_size


async def test_real_gemma_file_alongside_corrupt_and_truncated_files(
    gemma_path: Path, tmp_path: Path
) -> None:
    size = mixed_directory(tmp_path, gemma_path)
    source = GGUFDirectorySource(tmp_path)
    snap = await source.discover()

    assert snap.source == f"gguf:{tmp_path}" and snap.complete
    entries = {e.id: e for e in snap.entries}
    assert sorted(entries) == [GEMMA_ID, "local/tiny-chat"]
    gemma = entries[GEMMA_ID]
    assert gemma.id == model_id_for(gemma_path)  # the local backend's id for the same file
    assert (gemma.name, gemma.provider) == ("gemma-3-270m-q4_k_m", "local")
    assert gemma.context_window == 32768  # gemma3.context_length
    meta = gemma.metadata
    assert meta["architecture"] == "gemma3"
    assert meta["quantization"] == "Q4_K_M"
    assert meta["general_name"] == "Gemma 3 270m"
    assert meta["chat_template"] == "false"
    assert meta["format"] == "gguf"
    # No template in the file, but the local backend chats with gemma models.
    assert list(gemma.capabilities) == [
        C.CAPABILITY_TEXT_GENERATION,
        C.CAPABILITY_CHAT,
        C.CAPABILITY_STREAMING,
    ]
    assert gemma.resources.disk_bytes == size
    # weights plus f16 K/V for 18 layers x 1 KV head x 256 dims over 2048 tokens
    assert gemma.resources.memory_bytes == size + 2 * 18 * 1 * 256 * 2 * 2048

    errors = dict(zip(["cut.gguf", "empty.gguf", "garbage.gguf"], sorted(snap.errors), strict=True))
    for name, error in errors.items():
        assert error.startswith(f"gguf:{tmp_path}: {name} is not a readable GGUF file (")
    assert "GGUF magic invalid" in errors["garbage.gguf"]

    # A second pass reuses what was read while the files are unchanged.
    started = time.perf_counter()
    again = await source.discover()
    assert time.perf_counter() - started < 1.0
    assert again == snap


async def test_metadata_decides_chat_and_embedding(tmp_path: Path) -> None:
    write_gguf(tmp_path / "base.gguf")
    write_gguf(tmp_path / "chat.gguf", chat_template=True)
    write_gguf(tmp_path / "embed.gguf", "bert", embedding=True)
    entries = {e.id: e for e in (await GGUFDirectorySource(tmp_path).discover()).entries}

    assert C.CAPABILITY_CHAT not in entries["local/base"].capabilities
    assert C.CAPABILITY_CHAT in entries["local/chat"].capabilities
    embed = entries["local/embed"]
    assert list(embed.capabilities) == [C.CAPABILITY_EMBEDDING]
    assert list(embed.output_modalities) == [C.MODALITY_TENSOR]
    assert embed.metadata["architecture"] == "bert"


async def test_a_changed_file_is_read_again(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "model.gguf")
    source = GGUFDirectorySource(tmp_path)
    first = await source.discover()
    assert first.entries[0].metadata["chat_template"] == "false"
    write_gguf(path, chat_template=True)
    second = await source.discover()
    assert second.entries[0].metadata["chat_template"] == "true"


async def test_missing_directory_is_backend_unavailable_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"
    with pytest.raises(BackendUnavailable) as err:
        await GGUFDirectorySource(missing).discover()
    assert f"models directory {missing} does not exist" in err.value.message


def test_entry_of_a_single_file(tmp_path: Path) -> None:
    entry = gguf_entry(write_gguf(tmp_path / "x.gguf"))
    assert entry.id == "local/x" and entry.context_window == 4096
    assert entry.metadata["quantization"] == "Q8_0"
