"""BackendService over a `BackendHost`."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import grpc

from modelyard.backends.answer_stream import chunk_output, piece_to_chunk, whole_answer
from modelyard.backends.engine import Piece
from modelyard.backends.host import BackendHost
from modelyard_client.v1 import backend_pb2, backend_pb2_grpc

Ctx = grpc.aio.ServicerContext[Any, Any]


class BackendServicer(backend_pb2_grpc.BackendServiceServicer):
    def __init__(self, host: BackendHost) -> None:
        self._host = host

    async def InferStream(
        self, request: backend_pb2.InferRequest, context: Ctx
    ) -> AsyncGenerator[backend_pb2.InferChunk, None]:
        pieces = self._host.infer_stream(request.model_id, request.input, request.params)
        async with aclosing(pieces):
            async for piece in pieces:
                yield piece_to_chunk(piece)

    async def Infer(
        self, request: backend_pb2.InferRequest, context: Ctx
    ) -> backend_pb2.InferResponse:
        pieces = self._host.infer_stream(request.model_id, request.input, request.params)
        whole = await whole_answer(pieces, empty=Piece(""), output_of=chunk_output)
        last = whole.last
        return backend_pb2.InferResponse(
            text=whole.text,
            finish_reason=last.finish_reason,
            usage=last.usage(),
            tool_calls=last.tool_calls,
            output=whole.output,
            dropped_params=last.dropped_params,
        )

    async def Embed(
        self, request: backend_pb2.BackendEmbedRequest, context: Ctx
    ) -> backend_pb2.BackendEmbedResponse:
        return await self._host.embed(request.model_id, request.inputs, request.dimensions)

    async def ListModels(
        self, request: backend_pb2.BackendListModelsRequest, context: Ctx
    ) -> backend_pb2.BackendListModelsResponse:
        return backend_pb2.BackendListModelsResponse(
            backend=self._host.name, models=self._host.models()
        )

    async def Health(
        self, request: backend_pb2.BackendHealthRequest, context: Ctx
    ) -> backend_pb2.BackendHealthResponse:
        status, reason = self._host.health()
        return backend_pb2.BackendHealthResponse(
            backend=self._host.name,
            status=status,
            reason=reason,
            loaded_models=self._host.loaded_models(),
        )

    async def Load(
        self, request: backend_pb2.LoadRequest, context: Ctx
    ) -> backend_pb2.LoadResponse:
        took = await self._host.load(request.model_id, request.keep_loaded)
        return backend_pb2.LoadResponse(model_id=request.model_id, loaded=True, load_ms=took)

    async def Unload(
        self, request: backend_pb2.UnloadRequest, context: Ctx
    ) -> backend_pb2.UnloadResponse:
        was = await self._host.engine_for(request.model_id).unload(request.model_id)
        return backend_pb2.UnloadResponse(model_id=request.model_id, was_loaded=was)
