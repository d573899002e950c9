"""The `tensor` engine: ONNX models in process, run by onnxruntime on the CPU.

It serves the ``*.onnx`` files of its models directory (`onnx_models`). A
tensor model takes `Input.tensors` — checked against the model's inputs
before anything waits or loads (`tensor_specs.input_feeds`) — and answers
with its outputs in `Output.tensors` and no text. An image classifier
(`image_classifier`) also takes `Input.image`: decoded, resized and
normalised to its input, and answered with the top label as the text, its
outputs (the scores) in `Output.tensors`, and ``usage.images`` 1. Every answer
is one piece. Sampling and speech parameters mean nothing to such a model:
refused, or dropped and named when the request allows it.

One onnxruntime session per loaded model, opened on first use (or `load`, or
``hot_swap.preload``) within the hot-swap memory budget, each file sized by
its bytes; models load, queue and unload as `speech.in_process` says. A run
happens in a worker thread, using ``cpu_threads`` threads; a caller that goes
away stops it (onnxruntime's ``RunOptions.terminate``) and the session is idle
again before its lease ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncGenerator, Iterable
from typing import Any

from modelyard.backends.admission import DEFAULT_MAX_QUEUE
from modelyard.backends.engine import EngineHealth, Piece
from modelyard.backends.speech.in_process import InProcessModels
from modelyard.backends.speech.unsupported_params import PREDICTION_PARAMS, dropped_params
from modelyard.backends.tensor.onnx_models import (
    OnnxModel,
    OnnxModelsDir,
    onnxruntime,
    open_session,
)
from modelyard.backends.tensor.tensor_specs import Array, input_feeds, output_tensors
from modelyard_client.errors import FailedPrecondition, InvalidRequest, ModelyardError
from modelyard_client.v1 import common_pb2

log = logging.getLogger(__name__)


class _Sessions:
    """How the engine's ONNX files are sized, opened and closed (a `ModelOpener`)."""

    def __init__(self, cpu_threads: int) -> None:
        self.models: dict[str, OnnxModel] = {}
        self.cpu_threads = cpu_threads

    def size_bytes(self, model_id: str) -> int:
        return self.models[model_id].size_bytes()

    async def open(self, model_id: str) -> Any:
        path = self.models[model_id].path
        log.info("tensor: loading %s", path)
        return await asyncio.to_thread(open_session, path, threads=self.cpu_threads)

    async def close(self, model_id: str, model: Any) -> None:
        pass  # no lease is out (`LoadedModels`): the session is freed with its last reference


class TensorEngine(InProcessModels[Any]):
    """The ONNX models `models` reads (`OnnxModelsDir`: the backend's name, its
    directory, the names it serves, its classifiers), loaded on first use.

    Each run uses `cpu_threads` threads (None: every core). Loaded models share
    `memory_budget_bytes` (None: three quarters of the machine's memory) and
    `max_loaded`; one idle for `idle_timeout_s` (0: never) is unloaded; `preload`
    (catalog ids) are loaded by `start`.
    """

    kind = "tensor"

    def __init__(
        self,
        models: OnnxModelsDir,
        *,
        cpu_threads: int | None = None,
        max_loaded: int = 2,
        max_queue: int = DEFAULT_MAX_QUEUE,
        memory_budget_bytes: int | None = None,
        idle_timeout_s: float = 0.0,
        preload: Iterable[str] = (),
    ) -> None:
        self._opener = _Sessions(cpu_threads or os.cpu_count() or 1)
        super().__init__(
            models.backend,
            self._opener,
            max_loaded=max_loaded,
            max_queue=max_queue,
            memory_budget_bytes=memory_budget_bytes,
            idle_timeout_s=idle_timeout_s,
            preload=preload,
        )
        self.files = models  # what it serves, read as discovery reads it
        self._entries: dict[str, common_pb2.ModelEntry] = {}
        self._start_error = ""

    @property
    def cpu_threads(self) -> int:
        return self._opener.cpu_threads

    async def start(self) -> None:
        try:
            found, _ = await self.files.read()  # each model left out is logged
        except ModelyardError as exc:  # no directory, or no onnxruntime
            self._start_error = exc.message
            log.warning("%s: %s", self.backend, exc.message)
            return
        self._opener.models = found
        self._entries = {m: model.entry(self.backend) for m, model in found.items()}
        log.info("%s: %d ONNX model(s) in %s", self.backend, len(found), self.files.path)
        await self._serve(found)

    def models(self) -> list[common_pb2.ModelEntry]:
        out = []
        for model_id, entry in self._entries.items():
            copy = common_pb2.ModelEntry()
            copy.CopyFrom(entry)
            cold_start_ms = self._models.cold_start_ms(model_id)
            if cold_start_ms is not None:
                copy.performance.cold_start_ms = cold_start_ms
            out.append(copy)
        return out

    def health(self) -> EngineHealth:
        if self._start_error:
            return EngineHealth(common_pb2.HEALTH_STATUS_UNHEALTHY, self._start_error)
        if not self._entries:
            return EngineHealth(
                common_pb2.HEALTH_STATUS_DEGRADED, f"no ONNX models in {self.files.path}"
            )
        return EngineHealth(common_pb2.HEALTH_STATUS_HEALTHY)

    async def infer_stream(
        self,
        model_id: str,
        model_input: common_pb2.Input,
        params: common_pb2.GenerationParams,
    ) -> AsyncGenerator[Piece, None]:
        self._check(model_id)
        model = self._opener.models[model_id]
        dropped = dropped_params(params, PREDICTION_PARAMS, model_id, "onnxruntime")
        feeds, images = await _feeds(model, model_input)
        async with self._turn(model_id) as session:
            values = await _run(session, feeds, model)
        output = common_pb2.Output(tensors=output_tensors(values, model_id))
        text = ""
        if model.classifier is not None:
            text = model.classifier.top_label(values[model.classifier.scores], model_id)
        yield Piece(
            text,
            common_pb2.FINISH_REASON_STOP,
            output=output,
            images=images,
            dropped_params=dropped,
        )


async def _feeds(model: OnnxModel, model_input: common_pb2.Input) -> tuple[dict[str, Array], int]:
    """The model's inputs from the request's, and the images read (0 or 1)."""
    kind = model_input.WhichOneof("kind")
    if kind == "tensors":
        return input_feeds(model_input.tensors.tensors, model.inputs, model.model_id), 0
    classifier = model.classifier
    if kind == "image" and classifier is not None:
        # Decoding a large JPEG takes tens of milliseconds: not on the event loop.
        pixels = await asyncio.to_thread(classifier.pixels, model_input.image, model.model_id)
        return {classifier.input_name: pixels}, 1
    takes = "tensors (MODALITY_TENSOR)"
    if classifier is not None:
        takes = "an image or tensors (MODALITY_IMAGE, MODALITY_TENSOR)"
    raise InvalidRequest(
        f"model '{model.model_id}' takes {takes}, not {kind or 'an empty input'}", field="input"
    )


async def _run(session: Any, feeds: dict[str, Array], model: OnnxModel) -> dict[str, Array]:
    """One run in a worker thread; stopped if the caller goes away, and idle again before
    this returns or raises either way."""
    options = onnxruntime().RunOptions()
    work = asyncio.get_running_loop().run_in_executor(
        None, _run_session, session, feeds, options, model
    )
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        options.terminate = True  # onnxruntime stops between two nodes
        with contextlib.suppress(Exception):
            await asyncio.shield(work)
        raise


def _run_session(
    session: Any, feeds: dict[str, Array], options: Any, model: OnnxModel
) -> dict[str, Array]:
    errors = onnxruntime().capi.onnxruntime_pybind11_state
    try:
        values = session.run(None, feeds, options)
    except errors.InvalidArgument as exc:  # what the checks before did not see
        raise InvalidRequest(
            f"onnxruntime refused the input of model '{model.model_id}': {exc}", field="input"
        ) from exc
    except Exception as exc:
        raise FailedPrecondition(
            f"onnxruntime failed to run model '{model.model_id}': {exc}"
        ) from exc
    return {spec.name: value for spec, value in zip(model.outputs, values, strict=True)}
