"""llama.cpp in process, through llama-cpp-python's bindings of its C API.

Each loaded model is one llama.cpp model with `parallel_slots` generation
slots decoded together (`decode_slots.DecodeSlots`: continuous batching in one
context, one decode thread). Calls beyond the slots wait in the model's
`Admission`, at most `max_queue` of them, first come first served; the rest
are refused with `Overloaded` (scope ``model:<id>``). Loaded models live in a
`LoadedModels` within the memory budget (each sized by
`gguf_memory.estimated_memory_bytes` for every slot's context); every
generation holds a lease on its model, so none is unloaded under it.

Prompts are built as llama-cpp-python builds them: text as it is with a BOS
token; chat through the model's own template (``tokenizer.chat_template``),
or the Gemma format for a base model that has none.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelyard.backends.admission import DEFAULT_MAX_QUEUE, Admission
from modelyard.backends.content_parts import first_image_field
from modelyard.backends.engine import EngineHealth, Piece, chat_messages
from modelyard.backends.loaded_models import LoadedModels, default_budget_bytes
from modelyard.backends.local.decode_slots import (
    DEFAULT_PARALLEL_SLOTS,
    DecodeSlots,
    Generation,
    Sampling,
)
from modelyard.backends.local.gguf_memory import estimated_memory_bytes
from modelyard.backends.local.model_files import scan_models_dir
from modelyard.backends.speech.unsupported_params import (
    SPEECH_PARAMS,
    dropped_params,
    with_dropped,
)
from modelyard_client.errors import ContextLengthExceeded, InvalidRequest, ModelNotFound
from modelyard_client.v1 import common_pb2

log = logging.getLogger(__name__)

ColdStartReport = Callable[[str, float], None]


@dataclass
class _Loaded:
    """One loaded model: its weights and tokenizer, its slots, and how it reads chat."""

    model: Any  # llama_cpp._internals.LlamaModel
    slots: DecodeSlots
    chat_format: str  # "template" (the model's own) or "gemma" (a base model)
    chat_template: Any | None  # a llama_chat_format.Jinja2ChatFormatter

    def prompt(self, model_input: common_pb2.Input) -> tuple[list[int], tuple[str, ...]]:
        """The tokens `model_input` is decoded from, and the stop strings its format adds."""
        if model_input.WhichOneof("kind") == "text":
            return self.model.tokenize(model_input.text.encode(), True, True), ()
        messages = chat_messages(model_input)
        if self.chat_template is not None:
            rendered = self.chat_template(messages=messages)
        else:
            from llama_cpp.llama_chat_format import format_gemma

            rendered = format_gemma(messages=messages)
        stop = rendered.stop if isinstance(rendered.stop, list) else [rendered.stop or ""]
        tokens = self.model.tokenize(rendered.prompt.encode(), not rendered.added_special, True)
        return tokens, tuple(s for s in stop if s)


class _GGUFModels:
    """How the engine's GGUF files are sized, opened and closed (a `ModelOpener`)."""

    def __init__(self, n_ctx: int, n_threads: int, n_gpu_layers: int, slots: int) -> None:
        self.files: dict[str, Path] = {}
        self._n_ctx = n_ctx
        self._n_threads = n_threads
        self._n_gpu_layers = n_gpu_layers
        self._slots = slots
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
            known = (stamp, estimated_memory_bytes(path, self._n_ctx * self._slots))
            self._sizes[path] = known
        return known[1]

    async def open(self, model_id: str) -> _Loaded:
        return await asyncio.to_thread(self._open, self.path(model_id))

    async def close(self, model_id: str, model: _Loaded) -> None:
        await asyncio.to_thread(_close, model)

    def _open(self, path: Path) -> _Loaded:
        import llama_cpp
        from llama_cpp._internals import LlamaModel
        from llama_cpp._logger import set_verbose
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        log.info("local: loading %s", path)
        set_verbose(False)  # llama.cpp's own log: errors only, as `Llama(verbose=False)` sets it
        llama_cpp.llama_backend_init()
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = self._n_gpu_layers
        model: Any = LlamaModel(path_model=str(path), params=params, verbose=False)
        try:
            slots = DecodeSlots(
                model.model,
                model.vocab,
                slots=self._slots,
                n_ctx=self._n_ctx,
                n_threads=self._n_threads,
            )
        except BaseException:
            model.close()
            raise
        template = model.metadata().get("tokenizer.chat_template")
        if not template:  # base models carry no chat template: chat uses the gemma format
            return _Loaded(model, slots, "gemma", None)
        eos, bos = model.token_eos(), model.token_bos()
        formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=model.token_get_text(eos) if eos != -1 else "",
            bos_token=model.token_get_text(bos) if bos != -1 else "",
            stop_token_ids=[eos],
        )
        return _Loaded(model, slots, "template", formatter)


def _close(loaded: _Loaded) -> None:
    loaded.slots.close()
    loaded.model.close()


class LlamaEngine:
    """The `local` engine: GGUF files from `models_dir`, loaded on first use.

    `backend` is the configured backend's name, the first part of its catalog ids.
    Loaded models share `memory_budget_bytes` (None: three quarters of the
    machine's memory) and `max_loaded`; one no call used for `idle_timeout_s`
    (0: never) is unloaded; `preload` (catalog ids) are loaded by `start`. Each
    decodes `parallel_slots` streams at once, `max_queue` more wait.
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
        parallel_slots: int = DEFAULT_PARALLEL_SLOTS,
        max_queue: int = DEFAULT_MAX_QUEUE,
    ) -> None:
        self.backend = backend
        self._models_dir = models_dir
        self._n_ctx = n_ctx
        self.parallel_slots = parallel_slots
        self.max_queue = max_queue
        self._admissions: dict[str, Admission] = {}
        threads = n_threads or max(1, os.cpu_count() or 1)
        self._gguf = _GGUFModels(n_ctx, threads, n_gpu_layers, parallel_slots)
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
        limits = (
            f"backends.{self.backend}.parallel_slots={self.parallel_slots}, "
            f"max_queue={self.max_queue}"
        )
        self._admissions = {
            m: Admission(f"model:{m}", f"model '{m}'", limits, self.parallel_slots, self.max_queue)
            for m in self._gguf.files
        }
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
        admission = self._admissions.get(model_id)
        if admission is None:
            raise ModelNotFound(model_id, "the local backend")
        async with admission.slot(), self._models.lease(model_id) as loaded:
            prompt, stop = loaded.prompt(model_input)
            if len(prompt) >= self._n_ctx:
                raise ContextLengthExceeded(
                    f"model '{model_id}': the prompt is {len(prompt)} tokens, and its "
                    f"context holds {self._n_ctx} (backends.{self.backend}.n_ctx) with at "
                    "least one token to answer"
                )
            generation = _generation(params, prompt, stop, self._n_ctx)
            # aclosing: the stream must have left its slot before the admission's turn
            # and the lease are given back, even when our caller abandons it half way.
            async with aclosing(loaded.slots.stream(generation)) as pieces:
                async for piece in pieces:
                    yield with_dropped(piece, dropped)


def _generation(
    params: common_pb2.GenerationParams, prompt: list[int], stop: tuple[str, ...], n_ctx: int
) -> Generation:
    """What `params` ask of one stream (unset sampling values: llama-cpp-python's defaults)."""
    defaults = Sampling()
    return Generation(
        prompt,
        max_tokens=params.max_tokens or n_ctx,
        stop=tuple(params.stop) + stop,
        sampling=Sampling(
            temperature=params.temperature
            if params.HasField("temperature")
            else defaults.temperature,
            top_p=params.top_p if params.HasField("top_p") else defaults.top_p,
            top_k=params.top_k if params.HasField("top_k") else defaults.top_k,
            seed=params.seed if params.HasField("seed") else defaults.seed,
        ),
    )
