"""Discovery never hands the registry an entry whose id or version breaks the catalog's rule:
a file named oddly, or an upstream listing an odd name, is left out with an error."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

from modelyard.backends.local.model_files import scan_models_dir
from modelyard.discovery import GGUFDirectorySource
from modelyard.discovery.source import SourceSnapshot
from modelyard_client.v1 import common_pb2 as C

# Each makes an id the rule refuses: "local/..", "local/.", "local/" and 256 characters.
ODD_NAMES = ("...gguf", "..gguf", "---.gguf", "m" * 250 + ".gguf")


def write_gguf(path: Path) -> None:
    """A small valid GGUF file."""
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(4096)
    w.add_tensor("token_embd.weight", np.zeros((8, 16), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _odd_directory(tmp_path: Path) -> None:
    write_gguf(tmp_path / "fine.gguf")
    for name in ODD_NAMES:
        write_gguf(tmp_path / name)


async def test_gguf_files_whose_names_make_no_valid_id_are_left_out_with_an_error(
    tmp_path: Path,
) -> None:
    _odd_directory(tmp_path)
    snapshot = await GGUFDirectorySource(tmp_path).discover()
    assert [e.id for e in snapshot.entries] == ["local/fine"]
    refused = sorted(snapshot.errors)
    assert len(refused) == len(ODD_NAMES)
    assert refused[0] == (
        f"gguf:{tmp_path}: ---.gguf: makes the catalog id 'local/', invalid: "
        "the model name is empty"
    )
    assert f"gguf:{tmp_path}: ...gguf: makes the catalog id 'local/..', invalid: " in refused[1]
    assert refused[3].endswith("invalid: it is 256 characters, over 255")


def test_the_local_engine_serves_only_the_files_with_valid_ids(tmp_path: Path) -> None:
    _odd_directory(tmp_path)
    assert list(scan_models_dir(tmp_path)) == ["local/fine"]


def test_any_source_snapshot_moves_an_invalid_id_or_version_to_its_errors() -> None:
    found = (
        C.ModelEntry(id="ollama/gemma3:4b", version="a1b2c3"),
        C.ModelEntry(id="ollama/../../etc/passwd"),
        C.ModelEntry(id="ollama/ok", version="../../x\0"),
    )
    snapshot = SourceSnapshot("ollama", found, errors=("ollama: /api/ps failed",))
    assert [e.id for e in snapshot.entries] == ["ollama/gemma3:4b"]
    assert snapshot.errors == (
        "ollama: /api/ps failed",
        "ollama: 'ollama/../../etc/passwd' left out: invalid catalog id: "
        "the model name has a '..' segment",
        "ollama: 'ollama/ok' left out: invalid version '../../x\\x00': holds '\\x00' (U+0000)",
    )
