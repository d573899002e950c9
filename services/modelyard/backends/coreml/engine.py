"""The `coreml` engine: CoreML models from a directory, predicted through coremltools.

Prediction needs macOS (Core ML itself). On any other host the engine still
starts and lists the models in the directory (read by `model_files`, as
discovery reports them), each HEALTH_STATUS_UNAVAILABLE with the reason;
`health()` says the same and `infer_stream`, `load` raise
`FailedPrecondition` with it. A prediction answers with one piece: its outputs
as a JSON object (see `features.outputs_json`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from modelyard.backends.coreml.features import model_features, outputs_json
from modelyard.backends.coreml.model_files import CoreMLModelsDir
from modelyard.backends.coreml.runtime import coremltools, unsupported_reason
from modelyard.backends.engine import EngineHealth, Piece
from modelyard.backends.speech.unsupported_params import PREDICTION_PARAMS, dropped_params
from modelyard_client.errors import (
    FailedPrecondition,
    InvalidRequest,
    ModelNotFound,
    ModelyardError,
)
from modelyard_client.v1 import common_pb2

log = logging.getLogger(__name__)


class CoreMLEngine:
    kind = "coreml"

    def __init__(
        self,
        models_dir: Path,
        *,
        backend: str = "coreml",
        max_loaded: int = 4,
        system: str | None = None,
    ) -> None:
        self.backend = backend
        self._models_in_dir = CoreMLModelsDir(models_dir, backend=backend)
        self._models_dir = models_dir
        self._max_loaded = max_loaded
        # Why this host cannot predict ("" on macOS); `system` lets tests pretend.
        self._unsupported = unsupported_reason(system)
        self._entries: dict[str, common_pb2.ModelEntry] = {}
        self._loaded: OrderedDict[str, Any] = OrderedDict()  # model id -> coremltools MLModel
        self._lock = asyncio.Lock()
        self._start_error = ""

    async def start(self) -> None:
        try:
            entries, _ = await self._models_in_dir.read()  # each unreadable one is logged
        except ModelyardError as exc:
            self._start_error = exc.message
            log.warning("coreml: %s", exc.message)
            return
        self._entries = {e.id: e for e in entries}
        log.info("coreml: %d model(s) in %s", len(self._entries), self._models_dir)
        if self._unsupported:
            log.info("coreml: %s", self._unsupported)

    async def close(self) -> None:
        self._loaded.clear()

    def models(self) -> list[common_pb2.ModelEntry]:
        out = []
        for entry in self._entries.values():
            copy = common_pb2.ModelEntry()
            copy.CopyFrom(entry)
            if self._unsupported:
                copy.health = common_pb2.HEALTH_STATUS_UNAVAILABLE
                copy.health_reason = self._unsupported
            else:
                copy.health = common_pb2.HEALTH_STATUS_UNSPECIFIED
                copy.health_reason = ""
            out.append(copy)
        return out

    def health(self) -> EngineHealth:
        if self._unsupported:
            return EngineHealth(common_pb2.HEALTH_STATUS_UNAVAILABLE, self._unsupported)
        if self._start_error:
            return EngineHealth(common_pb2.HEALTH_STATUS_UNHEALTHY, self._start_error)
        if not self._entries:
            return EngineHealth(
                common_pb2.HEALTH_STATUS_DEGRADED, f"no CoreML models in {self._models_dir}"
            )
        return EngineHealth(common_pb2.HEALTH_STATUS_HEALTHY)

    def serves(self, model_id: str) -> bool:
        return model_id in self._entries

    def loaded_models(self) -> list[str]:
        return list(self._loaded)

    def _entry(self, model_id: str) -> common_pb2.ModelEntry:
        try:
            entry = self._entries[model_id]
        except KeyError:
            raise ModelNotFound(model_id, "the coreml backend") from None
        if self._unsupported:
            raise FailedPrecondition(self._unsupported)
        return entry

    async def load(self, model_id: str) -> float:
        started = time.perf_counter()
        await self._model(model_id)
        return (time.perf_counter() - started) * 1000

    async def unload(self, model_id: str) -> bool:
        if model_id not in self._entries:
            raise ModelNotFound(model_id, "the coreml backend")
        return self._loaded.pop(model_id, None) is not None

    async def _model(self, model_id: str) -> Any:
        entry = self._entry(model_id)
        async with self._lock:
            model = self._loaded.get(model_id)
            if model is None:
                path = entry.metadata["path"]
                model = await asyncio.to_thread(coremltools().models.MLModel, path)
                while len(self._loaded) >= self._max_loaded:
                    self._loaded.popitem(last=False)
                self._loaded[model_id] = model
            self._loaded.move_to_end(model_id)
            return model

    async def infer_stream(
        self,
        model_id: str,
        model_input: common_pb2.Input,
        params: common_pb2.GenerationParams,
    ) -> AsyncGenerator[Piece, None]:
        entry = self._entry(model_id)
        # A prediction samples nothing: refused, or left out and named when allowed.
        dropped = dropped_params(params, PREDICTION_PARAMS, model_id, "CoreML")
        features = model_features(model_input, json.loads(entry.input_schema_json or "{}"))
        model = await self._model(model_id)
        try:
            outputs = await asyncio.to_thread(model.predict, features)
        except (ValueError, TypeError, KeyError) as exc:  # coremltools' input checks
            raise InvalidRequest(f"CoreML rejected the input for '{model_id}': {exc}") from exc
        except RuntimeError as exc:
            raise FailedPrecondition(f"CoreML prediction failed for '{model_id}': {exc}") from exc
        yield Piece(outputs_json(outputs))
        yield Piece("", common_pb2.FINISH_REASON_STOP, dropped_params=dropped)
