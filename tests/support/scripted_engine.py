"""An `Engine` that plays back a script: for tests of the gateway's own logic."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from modelyard.backends.engine import EngineHealth, Piece
from modelyard_client.errors import ModelNotFound, ModelyardError
from modelyard_client.v1 import common_pb2


class ScriptedEngine:
    kind = "scripted"
    backend = "scripted"

    def __init__(
        self,
        model_ids: tuple[str, ...] = ("scripted/echo",),
        *,
        pieces: tuple[str, ...] = ("hello", " ", "world"),
        delay_s: float = 0.0,
        fail_with: ModelyardError | None = None,
        fail_after: int = 0,
        finish: bool = True,
        input_tokens: int = 3,
        context_window: int = 4096,
        limits: common_pb2.RateLimits | None = None,
    ) -> None:
        self.model_ids = model_ids
        self.pieces = pieces
        self.delay_s = delay_s
        self.fail_with = fail_with
        self.fail_after = fail_after  # pieces streamed before `fail_with` is raised
        self.finish = finish
        self.input_tokens = input_tokens  # the input count the finish piece reports
        self.context_window = context_window
        self.limits = limits
        self.calls: list[tuple[str, common_pb2.Input, common_pb2.GenerationParams]] = []
        self.called = asyncio.Event()

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def models(self) -> list[common_pb2.ModelEntry]:
        return [
            common_pb2.ModelEntry(
                id=model_id,
                provider="scripted",
                context_window=self.context_window,
                capabilities=[common_pb2.CAPABILITY_TEXT_GENERATION, common_pb2.CAPABILITY_CHAT],
                input_modalities=[common_pb2.MODALITY_TEXT],
                limits=self.limits,
            )
            for model_id in self.model_ids
        ]

    async def infer_stream(
        self,
        model_id: str,
        model_input: common_pb2.Input,
        params: common_pb2.GenerationParams,
    ) -> AsyncGenerator[Piece, None]:
        if model_id not in self.model_ids:
            raise ModelNotFound(model_id, "the scripted engine")
        self.calls.append((model_id, model_input, params))
        self.called.set()
        for i, text in enumerate(self.pieces):
            if self.fail_with is not None and i == self.fail_after:
                raise self.fail_with
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            yield Piece(text)
        if self.fail_with is not None:
            raise self.fail_with
        if self.finish:
            yield Piece(
                "",
                common_pb2.FINISH_REASON_STOP,
                input_tokens=self.input_tokens,
                output_tokens=len(self.pieces),
            )

    async def load(self, model_id: str) -> float:
        return 0.0

    async def unload(self, model_id: str) -> bool:
        return False

    def serves(self, model_id: str) -> bool:
        return model_id in self.model_ids

    def loaded_models(self) -> list[str]:
        return list(self.model_ids)

    def health(self) -> EngineHealth:
        return EngineHealth(common_pb2.HEALTH_STATUS_HEALTHY)
