"""An `Engine` whose answer never ends: for tests of what holds a stream open."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from modelyard.backends.engine import Piece
from modelyard_client.v1 import common_pb2
from support.scripted_engine import ScriptedEngine

PIECE = "x" * 1024


class EndlessEngine(ScriptedEngine):
    """Streams 1 KiB pieces for ever; counts what the gateway pulled, and sees its close."""

    def __init__(self) -> None:
        super().__init__()
        self.pulled = 0
        self.closed = asyncio.Event()

    async def infer_stream(
        self,
        model_id: str,
        model_input: common_pb2.Input,
        params: common_pb2.GenerationParams,
    ) -> AsyncGenerator[Piece, None]:
        self.calls.append((model_id, model_input, params))
        try:
            while True:
                self.pulled += 1
                yield Piece(PIECE)
                await asyncio.sleep(0)
        finally:
            self.closed.set()

    async def settled(self) -> int:
        """What it had pulled once it stopped pulling (no change for 0.3 s)."""
        last = -1
        while self.pulled != last:
            last = self.pulled
            await asyncio.sleep(0.3)
        return last
