"""The memory estimate of a GGUF model from its header, on the real Gemma 3 270M file."""

from __future__ import annotations

from pathlib import Path

from modelyard.backends.local.gguf_memory import (
    FALLBACK_BYTES_PER_POSITION,
    SCRATCH_ALLOWANCE_BYTES,
    KVShape,
    estimated_memory_bytes,
    read_kv_shape,
)

MIB = 1024 * 1024


def test_the_kv_cache_shape_comes_from_the_file_metadata(gemma_path: Path) -> None:
    shape = read_kv_shape(gemma_path)
    assert shape == KVShape(layers=18, kv_heads=1, key_dim=256, value_dim=256)
    # keys and values, f16: 18 x 1 x (256 + 256) x 2 bytes = 18 KiB per position
    assert shape.bytes_for(2048) == 36 * MIB


def test_the_estimate_is_the_file_plus_the_kv_cache_plus_scratch(gemma_path: Path) -> None:
    size = gemma_path.stat().st_size
    assert estimated_memory_bytes(gemma_path, 512) == size + 9 * MIB + SCRATCH_ALLOWANCE_BYTES


def test_a_file_that_is_no_gguf_gets_the_per_position_allowance(tmp_path: Path) -> None:
    path = tmp_path / "broken.gguf"
    path.write_bytes(b"GGML" + bytes(100))
    assert read_kv_shape(path) is None
    assert estimated_memory_bytes(path, 1024) == (
        104 + 1024 * FALLBACK_BYTES_PER_POSITION + SCRATCH_ALLOWANCE_BYTES
    )
