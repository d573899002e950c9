"""How much memory a GGUF model takes once llama.cpp has loaded it with a context.

Weights: the file's size (llama.cpp maps the file; every tensor is touched on
the first generation). KV cache: for each layer a key and a value vector per
position of the context, per key/value head, in f16 (llama.cpp's default
cache type): ``2 x layers x n_ctx x kv_heads x head_dim x 2 bytes``, read
from the file's own metadata. Compute buffers and scratch take
`SCRATCH_ALLOWANCE_BYTES` more, plus what the output logits need.

Reading the metadata: only the header's scalar values are decoded; arrays
(the tokenizer's vocabulary, 262k strings for Gemma 3) are skipped by their
lengths, and reading stops once every needed key is known, so an estimate
costs milliseconds where `gguf.GGUFReader` takes seconds. A file whose
metadata lacks a key (or is no GGUF) gets `FALLBACK_BYTES_PER_POSITION` per
position of the context instead, the allowance the engine used before.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

# Compute buffers, llama.cpp's scratch and the logits of one batch: the process
# grew 339 MiB loading Gemma 3 270M (241 MiB file, 36 MiB KV cache) at n_ctx 2048
# and generating, about 62 MiB beyond weights and cache.
SCRATCH_ALLOWANCE_BYTES = 64 * 1024 * 1024
# Per position of the context when the file does not say how big its KV cache is.
FALLBACK_BYTES_PER_POSITION = 64 * 1024
_KV_BYTES_PER_VALUE = 2  # f16

# GGUF value types (gguf.GGUFValueType) and the size of each fixed-width one.
_FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9
_INTS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 10: "<Q", 11: "<q"}


@dataclass(frozen=True)
class KVShape:
    """What the KV cache's size depends on, from the file's metadata."""

    layers: int
    kv_heads: int
    key_dim: int
    value_dim: int

    def bytes_for(self, n_ctx: int) -> int:
        per_position = self.layers * self.kv_heads * (self.key_dim + self.value_dim)
        return per_position * n_ctx * _KV_BYTES_PER_VALUE


def estimated_memory_bytes(path: Path, n_ctx: int) -> int:
    """The memory `path` takes loaded with a context of `n_ctx` positions (see the module)."""
    size = path.stat().st_size
    shape = read_kv_shape(path)
    kv = shape.bytes_for(n_ctx) if shape else n_ctx * FALLBACK_BYTES_PER_POSITION
    return size + kv + SCRATCH_ALLOWANCE_BYTES


def read_kv_shape(path: Path) -> KVShape | None:
    """The KV cache's shape from the GGUF header, or None when the file does not give it."""
    try:
        with path.open("rb") as f:
            values = _scalars(f)
    except (OSError, struct.error, UnicodeDecodeError, ValueError):
        return None
    arch = values.get("general.architecture")
    if not isinstance(arch, str):
        return None
    layers = values.get(f"{arch}.block_count")
    heads = values.get(f"{arch}.attention.head_count")
    kv_heads = values.get(f"{arch}.attention.head_count_kv", heads)
    embd = values.get(f"{arch}.embedding_length")
    if not all(isinstance(v, int) and v > 0 for v in (layers, heads, kv_heads, embd)):
        return None
    assert isinstance(layers, int) and isinstance(heads, int)
    assert isinstance(kv_heads, int) and isinstance(embd, int)
    key_dim = values.get(f"{arch}.attention.key_length", embd // heads)
    value_dim = values.get(f"{arch}.attention.value_length", embd // heads)
    if not (isinstance(key_dim, int) and isinstance(value_dim, int)):
        return None
    return KVShape(layers, kv_heads, key_dim, value_dim)


_NEEDED_SUFFIXES = (
    ".block_count",
    ".attention.head_count",
    ".attention.head_count_kv",
    ".embedding_length",
    ".attention.key_length",
    ".attention.value_length",
)


def _scalars(f: BinaryIO) -> dict[str, int | str]:
    """The header's integer and string values by key (arrays skipped), stopping early."""
    if f.read(4) != b"GGUF":
        raise ValueError("not a GGUF file")
    (version,) = struct.unpack("<I", f.read(4))
    if version < 2:
        raise ValueError(f"GGUF version {version} is not read")
    _tensors, kv_count = struct.unpack("<QQ", f.read(16))
    values: dict[str, int | str] = {}
    for _ in range(kv_count):
        key = _string(f)
        (kind,) = struct.unpack("<I", f.read(4))
        if kind == _STRING:
            values[key] = _string(f)
        elif kind in _INTS:
            fmt = _INTS[kind]
            (values[key],) = struct.unpack(fmt, f.read(struct.calcsize(fmt)))
        else:
            _skip(f, kind)
        arch = values.get("general.architecture")
        if isinstance(arch, str) and all(f"{arch}{s}" in values for s in _NEEDED_SUFFIXES):
            break
    return values


def _string(f: BinaryIO) -> str:
    (length,) = struct.unpack("<Q", f.read(8))
    return f.read(length).decode()


def _skip(f: BinaryIO, kind: int) -> None:
    if kind in _FIXED:
        f.seek(_FIXED[kind], 1)
    elif kind == _STRING:
        (length,) = struct.unpack("<Q", f.read(8))
        f.seek(length, 1)
    elif kind == _ARRAY:
        item, count = struct.unpack("<IQ", f.read(12))
        if item in _FIXED:
            f.seek(_FIXED[item] * count, 1)
        else:
            for _ in range(count):
                _skip(f, item)
    else:
        raise ValueError(f"unknown GGUF value type {kind}")
