"""llama.cpp in process, through llama-cpp-python.

Each loaded model is one `Llama` object used by one generation at a time (the
library is not re-entrant). Generation runs in a worker thread and hands each
token to the event loop as it is produced; closing the stream stops the
thread at the next token. Loaded models live in a `LoadedModels` within the
memory budget (each sized by `gguf_memory.estimated_memory_bytes`); every
generation holds a lease on its model, so none is unloaded under it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelyard.backends.content_parts import first_image_field
from modelyard.backends.engine import FINISH_REASONS, EngineHealth, Piece, chat_messages
from modelyard.backends.loaded_models import LoadedModels, default_budget_bytes
from modelyard.backends.local.gguf_memory import estimated_memory_bytes
from modelyard.backends.local.model_files import scan_models_dir
from modelyard.backends.speech.unsupported_params import (
    SPEECH_PARAMS,
    dropped_params,
    with_dropped,
)
from modelyard.backends.threaded_stream import pieces_from_thread
from modelyard_client.errors import InvalidRequest, ModelNotFound
from modelyard_client.v1 import common_pb2

log = logging.getLogger(__name__)

ColdStartReport = Callable[[str, float], None]


@dataclass
class _Loaded:
    llm: Any  # llama_cpp.Llama
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class _GGUFModels:
    """How the engine's GGUF files are sized, opened and closed (a `ModelOpener`)."""

    def __init__(self, n_ctx: int, n_threads: int, n_gpu_layers: int) -> None:
        self.files: dict[str, Path] = {}
        self._n_ctx = n_ctx
        self._n_threads = n_threads
        self._n_gpu_layers = n_gpu_layers
        self._sizes: dict[Path, tuple[tuple[int, int], int]] = {}  # by (size, mtime)

    def path(self, model_id: str) -> Path:
        path = self.files.get(model_id)
        if path is None:
            raise ModelNotFound(model_id, "the local backend")
        return path

    def size_bytes(self, model_id: str) -> int:
        path = self.path(model_id)
        stat = path.stat()
        stamp = (stat.st_size, stat.st_mtime_ns)
        known = self._sizes.get(path)
        if known is None or known[0] != stamp:
            known = (stamp, estimated_memory_bytes(path, self._n_ctx))
            self._sizes[path] = known
        return known[1]

    async def open(self, model_id: str) -> _Loaded:
        return _Loaded(await asyncio.to_thread(self._open, self.path(model_id)))

    async def close(self, model_id: str, model: _Loaded) -> None:
        async with model.lock:  # free already (no lease), but never close under a thread
            await asyncio.to_thread(model.llm.close)

    def _open(self, path: Path) -> Any:
        from llama_cpp import Llama

        log.info("local: loading %s", path)
        llm = Llama(
            model_path=str(path),
            n_ctx=self._n_ctx,
            n_threads=self._n_threads,
            n_gpu_layers=self._n_gpu_layers,
            verbose=False,
        )
        if not llm.metadata.get("tokenizer.chat_template"):
            # Base models carry no chat template: chat input uses the gemma format.
            llm.chat_format = "gemma"
        return llm


class LlamaEngine:
    """The `local` engine: GGUF files from `models_dir`, loaded on first use.

    `backend` is the configured backend's name, the first part of its catalog ids.
    Loaded models share `memory_budget_bytes` (None: three quarters of the
    machine's memory) and `max_loaded`; one no call used for `idle_timeout_s`
    (0: never) is unloaded; `preload` (catalog ids) are loaded by `start`.
    """

    kind = "local"

    def __init__(
        self,
        models_dir: Path,
        *,
        backend: str = "local",
        n_ctx: int = 2048,
        n_threads: int | None = None,
        n_gpu_layers: int = 0,
        max_loaded: int = 2,
        memory_budget_bytes: int | None = None,
        idle_timeout_s: float = 0.0,
        preload: Iterable[str] = (),
    ) -> None:
        self.backend = backend
        self._models_dir = models_dir
        self._n_ctx = n_ctx
        self._gguf = _GGUFModels(n_ctx, n_threads or max(1, os.cpu_count() or 1), n_gpu_layers)
        self._preload = tuple(preload)
        self._reports: list[ColdStartReport] = []
        self._models = LoadedModels(
            self._gguf,
            budget_bytes=memory_budget_bytes or default_budget_bytes(),
            max_loaded=max_loaded,
            idle_timeout_s=idle_timeout_s,
            on_loaded=self._cold_started,
        )

    async def start(self) -> None:
        self._gguf.files = scan_models_dir(self._models_dir, self.backend)
        log.info(f"{self.backend}: %d GGUF model(s) in %s", len(self._gguf.files), self._models_dir)
        self._models.start()
        mine = [m for m in self._preload if m in self._gguf.files]
        others = [m for m in self._preload if m not in self._gguf.files]
        if others:
            log.info("%s: preload leaves %s to other backends", self.backend, ", ".join(others))
        await self._models.preload(mine)

    async def close(self) -> None:
        await self._models.close()

    def models(self) -> list[common_pb2.ModelEntry]:
        return [self._entry(model_id, path) for model_id, path in self._gguf.files.items()]

    def _entry(self, model_id: str, path: Path) -> common_pb2.ModelEntry:
        entry = common_pb2.ModelEntry(
            id=model_id,
            name=path.stem,
            provider=self.backend,
            capabilities=[
                common_pb2.CAPABILITY_TEXT_GENERATION,
                common_pb2.CAPABILITY_CHAT,
                common_pb2.CAPABILITY_STREAMING,
            ],
            input_modalities=[common_pb2.MODALITY_TEXT],
            output_modalities=[common_pb2.MODALITY_TEXT],
            context_window=self._n_ctx,
            resources=common_pb2.ResourceRequirements(
                memory_bytes=self._gguf.size_bytes(model_id), disk_bytes=path.stat().st_size
            ),
            metadata={"path": str(path), "format": "gguf"},
        )
        cold_start_ms = self._models.cold_start_ms(model_id)
        if cold_start_ms is not None:
            entry.performance.cold_start_ms = cold_start_ms
        return entry

    def serves(self, model_id: str) -> bool:
        return model_id in self._gguf.files

    def loaded_models(self) -> list[str]:
        return self._models.loaded()

    def health(self) -> EngineHealth:
        if not self._gguf.files:
            return EngineHealth(
                common_pb2.HEALTH_STATUS_DEGRADED, f"no GGUF files in {self._models_dir}"
            )
        return EngineHealth(common_pb2.HEALTH_STATUS_HEALTHY)

    # ---- loading --------------------------------------------------------------

    async def load(self, model_id: str) -> float:
        return await self._models.load(model_id)

    async def load_beside(self, model_id: str, keep_loaded: Sequence[str]) -> float:
        """Load `model_id` without unloading any of `keep_loaded` (`MemoryBudgetExceeded`
        when the budget cannot hold them together)."""
        return await self._models.load(model_id, keep_loaded)

    async def unload(self, model_id: str) -> bool:
        self._gguf.path(model_id)  # ModelNotFound for a model this engine does not serve
        return await self._models.unload(model_id)

    def report_cold_starts(self, report: ColdStartReport) -> None:
        """Call `report(model_id, milliseconds)` after each model load from now on."""
        self._reports.append(report)

    def _cold_started(self, model_id: str, took_ms: float) -> None:
        for report in self._reports:
            report(model_id, took_ms)

    # ---- generation -----------------------------------------------------------

    async def infer_stream(
        self,
        model_id: str,
        model_input: common_pb2.Input,
        params: common_pb2.GenerationParams,
    ) -> AsyncGenerator[Piece, None]:
        kind = model_input.WhichOneof("kind")
        if kind not in ("text", "chat"):
            raise InvalidRequest(f"model '{model_id}' takes text or chat input, not {kind}")
        image = first_image_field(model_input)
        if image is not None:  # the gateway's vision check stops it first, normally
            raise InvalidRequest(
                f"{image}: model '{model_id}' is a text-only GGUF model (llama.cpp); it "
                "takes no images",
                field=image,
            )
        # No speech from a GGUF text model: refused, or left out and named when allowed.
        dropped = dropped_params(params, SPEECH_PARAMS, model_id, "llama.cpp")
        async with self._models.lease(model_id) as loaded, loaded.lock:
            cancel = threading.Event()
            produce = _producer(loaded.llm, model_input, params, cancel, self._n_ctx)
            # aclosing: the worker must have stopped before the lock and the lease
            # are released, even when our caller abandons this stream half way.
            async with aclosing(
                pieces_from_thread(produce, cancel, "llama.cpp generation")
            ) as pieces:
                async for piece in pieces:
                    yield with_dropped(piece, dropped)


def _sampling(params: common_pb2.GenerationParams, n_ctx: int) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"max_tokens": params.max_tokens or n_ctx, "stream": True}
    if params.HasField("temperature"):
        kwargs["temperature"] = params.temperature
    if params.HasField("top_p"):
        kwargs["top_p"] = params.top_p
    if params.HasField("top_k"):
        kwargs["top_k"] = params.top_k
    if params.HasField("seed"):
        kwargs["seed"] = params.seed
    if params.stop:
        kwargs["stop"] = list(params.stop)
    return kwargs


def _producer(
    llm: Any,
    model_input: common_pb2.Input,
    params: common_pb2.GenerationParams,
    cancel: threading.Event,
    n_ctx: int,
) -> Callable[[], Iterator[Piece]]:
    """A function that runs the generation and yields pieces (called in a thread)."""

    def produce() -> Iterator[Piece]:
        kwargs = _sampling(params, n_ctx)
        if model_input.WhichOneof("kind") == "text":
            prompt = model_input.text
            prompt_tokens = len(llm.tokenize(prompt.encode(), add_bos=True, special=True))
            stream = llm.create_completion(prompt=prompt, **kwargs)
            read = _completion_text
        else:
            messages = chat_messages(model_input)
            stream = llm.create_chat_completion(messages=messages, **kwargs)
            prompt_tokens = 0
            read = _chat_text
        finish: str | None = None
        output: list[str] = []
        try:
            for chunk in stream:
                if cancel.is_set():
                    return
                text, finish = read(chunk)
                if text:
                    output.append(text)
                    yield Piece(text)
                if finish:
                    break
        finally:
            stream.close()
        if not prompt_tokens:
            prompt_tokens = llm.n_tokens - len(
                llm.tokenize("".join(output).encode(), add_bos=False)
            )
        completion_tokens = len(llm.tokenize("".join(output).encode(), add_bos=False))
        yield Piece(
            "",
            FINISH_REASONS.get(finish or "", common_pb2.FINISH_REASON_STOP),
            input_tokens=max(prompt_tokens, 0),
            output_tokens=completion_tokens,
        )

    return produce


def _completion_text(chunk: dict[str, Any]) -> tuple[str, str | None]:
    choice = chunk["choices"][0]
    return choice.get("text") or "", choice.get("finish_reason")


def _chat_text(chunk: dict[str, Any]) -> tuple[str, str | None]:
    choice = chunk["choices"][0]
    return (choice.get("delta") or {}).get("content") or "", choice.get("finish_reason")
