"""GGUF files in a models directory, described from their own metadata with `gguf`.

Ids are the serving backend's (``<backend>/<stem>``, `model_id_for`), so what
discovery finds and what the backend serves are the same catalog entries.

`gguf.GGUFReader` parses every metadata array, the tokenizer's vocabulary
included: about 10-25 s for Gemma 3's 262k tokens on this project's 2-core
machines. Each file is therefore read once per (size, mtime) and the result
kept, and reading happens in a worker process (`_reader_pool`), which ends with the
process that started it, killed outright or not.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from modelyard.backends.local.model_files import model_id_for, read_models_dir
from modelyard.discovery.source import SourceSnapshot
from modelyard_client.errors import BackendUnavailable
from modelyard_client.v1 import common_pb2

log = logging.getLogger(__name__)

# The context the memory estimate assumes: the local backend's default n_ctx.
ESTIMATE_CONTEXT = 2048
# Architectures the local backend can chat with even without a chat template in
# the file (llama_engine falls back to its gemma chat format).
_CHAT_WITHOUT_TEMPLATE = ("gemma",)


@dataclass(frozen=True)
class _Read:
    stamp: tuple[int, int]  # (size, mtime_ns) the result was read at
    entry: common_pb2.ModelEntry | None
    error: str = ""


class GGUFDirectorySource:
    """Every ``*.gguf`` file directly in `models_dir`, as the models of backend `backend`."""

    def __init__(self, models_dir: Path, *, backend: str = "local") -> None:
        self.models_dir = models_dir
        self.backend = backend
        self.name = f"gguf:{models_dir}"
        self._cache: dict[Path, _Read] = {}

    async def discover(self) -> SourceSnapshot:
        if not self.models_dir.is_dir():
            raise BackendUnavailable(
                f"{self.name}: models directory {self.models_dir} does not exist "
                "or is not a directory"
            )
        files, refused = read_models_dir(self.models_dir, self.backend)
        reads = await self._read_all(list(files.values()))
        self._cache = {r[0]: r[1] for r in reads}
        entries = tuple(self._served(path, r.entry) for path, r in reads if r.entry is not None)
        errors = (
            *(f"{self.name}: {message}" for message in refused),
            *(r.error for _, r in reads if r.error),
        )
        for error in errors:
            log.warning("%s", error)
        return SourceSnapshot(self.name, entries, errors)

    def _served(self, path: Path, read: common_pb2.ModelEntry) -> common_pb2.ModelEntry:
        entry = common_pb2.ModelEntry()
        entry.CopyFrom(read)
        entry.id, entry.provider = model_id_for(path, self.backend), self.backend
        return entry

    async def _read_all(self, paths: list[Path]) -> list[tuple[Path, _Read]]:
        loop = asyncio.get_running_loop()
        out: list[tuple[Path, _Read | asyncio.Future[_Read]]] = []
        for path in paths:
            try:
                st = path.stat()
            except OSError as exc:  # removed between the listing and now
                out.append((path, _Read((0, 0), None, f"{self.name}: {path.name}: {exc}")))
                continue
            stamp = (st.st_size, st.st_mtime_ns)
            cached = self._cache.get(path)
            if cached is not None and cached.stamp == stamp:
                out.append((path, cached))
            else:
                # In another process: parsing a vocabulary holds the GIL for seconds,
                # which would stall every request of a process that also serves.
                out.append(
                    (path, loop.run_in_executor(_reader_pool(), _read, path, stamp, self.name))
                )
        return [(path, r if isinstance(r, _Read) else await r) for path, r in out]


_POOL: ProcessPoolExecutor | None = None


def _reader_pool() -> ProcessPoolExecutor:
    """One worker process, started on first use ("spawn": never fork a gRPC process)."""
    global _POOL
    if _POOL is None:
        _POOL = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_exit_with_parent,
            initargs=(os.getpid(),),
        )
    return _POOL


def _exit_with_parent(parent: int, every_s: float = 1.0) -> None:
    """The reader's initializer: it ends once the process that started it is gone. A parent
    killed outright (SIGKILL, the OOM killer) cannot stop its pool, and the worker would
    wait for ever on a queue whose write end it holds itself."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def stop_reader_pool() -> None:
    """Stop the metadata reader now, a read in progress included: the process is ending, and
    a read of a large vocabulary would otherwise hold its exit for many seconds."""
    global _POOL
    pool, _POOL = _POOL, None
    if pool is None:
        return
    workers = list((getattr(pool, "_processes", None) or {}).values())  # no public handle
    pool.shutdown(wait=False, cancel_futures=True)
    for worker in workers:
        worker.terminate()
    # Waited on by sentinel, never by join: the pool's own thread reaps the worker at the same
    # time, and a join that loses that race reads the dead worker as alive.
    ended = set(wait([w.sentinel for w in workers], timeout=2))
    for worker in workers:
        if worker.sentinel not in ended:  # SIGTERM ignored (an inherited SIG_IGN): SIGKILL not
            worker.kill()


def _read(path: Path, stamp: tuple[int, int], source: str) -> _Read:
    try:
        return _Read(stamp, gguf_entry(path))
    except Exception as exc:  # any parse failure is this file's problem, not the pass's
        cause = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return _Read(stamp, None, f"{source}: {path.name} is not a readable GGUF file ({cause})")


def gguf_entry(path: Path) -> common_pb2.ModelEntry:
    """The catalog entry of one GGUF file; raises if the file is not valid GGUF."""
    from gguf import GGUFReader, LlamaFileType

    reader = GGUFReader(path)  # maps every tensor: a truncated file fails here
    size = path.stat().st_size

    def value(key: str) -> Any:
        return _value(reader, key)

    arch = str(value("general.architecture") or "")
    if not arch:
        raise ValueError("no general.architecture key")
    file_type = value("general.file_type")
    try:
        quant = LlamaFileType(file_type).name.removeprefix("MOSTLY_").removeprefix("ALL_")
    except ValueError:
        quant = f"file_type {file_type}" if file_type is not None else ""
    has_template = "tokenizer.chat_template" in reader.fields
    embedding = f"{arch}.pooling_type" in reader.fields

    C = common_pb2
    if embedding:
        caps = [C.CAPABILITY_EMBEDDING]
        outputs = [C.MODALITY_TENSOR]
    else:
        caps = [C.CAPABILITY_TEXT_GENERATION, C.CAPABILITY_STREAMING]
        if has_template or arch.startswith(_CHAT_WITHOUT_TEMPLATE):
            caps.insert(1, C.CAPABILITY_CHAT)
        outputs = [C.MODALITY_TEXT]

    metadata = {
        "path": str(path),
        "format": "gguf",
        "architecture": arch,
        "quantization": quant,
        "file_type": "" if file_type is None else str(file_type),
        "general_name": str(value("general.name") or ""),
        "size_label": str(value("general.size_label") or ""),
        "license": str(value("general.license") or ""),
        "chat_template": "true" if has_template else "false",
        "parameter_count": str(value("general.parameter_count") or ""),
        "gguf_version": str(value("GGUF.version") or ""),
        "tensor_count": str(len(reader.tensors)),
    }
    return common_pb2.ModelEntry(
        id=model_id_for(path),
        name=path.stem,
        provider="local",
        version=str(value("general.version") or ""),
        capabilities=caps,
        input_modalities=[C.MODALITY_TEXT],
        output_modalities=outputs,
        context_window=int(value(f"{arch}.context_length") or 0),
        resources=common_pb2.ResourceRequirements(
            memory_bytes=size + _kv_bytes_per_token(reader, arch) * ESTIMATE_CONTEXT,
            disk_bytes=size,
        ),
        metadata={k: v for k, v in metadata.items() if v},
    )


def _value(reader: Any, key: str) -> Any:
    """A scalar or string metadata value, None when absent or an array.

    Reads `ReaderField.parts` directly: `contents()` is missing from older gguf releases.
    """
    from gguf import GGUFValueType

    field = reader.fields.get(key)
    if field is None or not field.data or not field.types:
        return None
    kind = field.types[0]
    if kind == GGUFValueType.ARRAY:
        return None
    part = field.parts[field.data[0]]
    if kind == GGUFValueType.STRING:
        return bytes(part).decode("utf-8", errors="replace")
    return part.tolist()[0]


def _kv_bytes_per_token(reader: Any, arch: str) -> int:
    """f16 K and V for every layer: what each token of context costs in memory."""
    layers = _value(reader, f"{arch}.block_count") or 0
    heads = _value(reader, f"{arch}.attention.head_count") or 0
    kv_heads = _value(reader, f"{arch}.attention.head_count_kv") or heads
    head_dim = _value(reader, f"{arch}.attention.key_length") or (
        (_value(reader, f"{arch}.embedding_length") or 0) // heads if heads else 0
    )
    return int(2 * layers * kv_heads * head_dim * 2)
