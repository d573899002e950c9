"""GatewayService over `GatewayCore`, through the response cache when one is configured."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import grpc

from modelyard.gateway.batch import compare, generate_batch
from modelyard.gateway.core import GatewayCore
from modelyard.gateway.response_cache import CachedGateway, ResponseCache
from modelyard.ratelimit.caller import api_key_from_metadata
from modelyard.v1 import gateway_pb2, gateway_pb2_grpc

Ctx = grpc.aio.ServicerContext[Any, Any]


class GatewayServicer(gateway_pb2_grpc.GatewayServiceServicer):
    def __init__(self, core: GatewayCore, cache: ResponseCache | None = None) -> None:
        self._core = core
        # Without a cache (the default) Generate and GenerateStream call the core itself.
        self._answers: GatewayCore | CachedGateway = (
            core if cache is None else CachedGateway(core, cache)
        )

    async def Generate(
        self, request: gateway_pb2.GenerateRequest, context: Ctx
    ) -> gateway_pb2.GenerateResponse:
        api_key = api_key_from_metadata(context.invocation_metadata())
        deadline = self._core.deadline(context.time_remaining())
        return await self._answers.generate(request, deadline, api_key)

    async def GenerateStream(
        self, request: gateway_pb2.GenerateRequest, context: Ctx
    ) -> AsyncGenerator[gateway_pb2.GenerateChunk, None]:
        api_key = api_key_from_metadata(context.invocation_metadata())
        deadline = self._core.deadline(context.time_remaining())
        chunks = self._answers.generate_stream(request, deadline, api_key)
        async with aclosing(chunks):
            async for chunk in chunks:
                yield chunk

    async def BatchGenerate(
        self, request: gateway_pb2.BatchGenerateRequest, context: Ctx
    ) -> gateway_pb2.BatchGenerateResponse:
        api_key = api_key_from_metadata(context.invocation_metadata())
        deadline = self._core.deadline(context.time_remaining())
        results = await generate_batch(self._core, request.requests, deadline, api_key)
        return gateway_pb2.BatchGenerateResponse(results=results)

    async def Compare(
        self, request: gateway_pb2.CompareRequest, context: Ctx
    ) -> gateway_pb2.CompareResponse:
        api_key = api_key_from_metadata(context.invocation_metadata())
        deadline = self._core.deadline(context.time_remaining())
        results = await compare(self._core, request, deadline, api_key)
        return gateway_pb2.CompareResponse(results=results)
