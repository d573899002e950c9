"""GatewayService over `GatewayCore`: behind the security stages (`guarded.py`), through the
response cache when one is configured."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import grpc

from modelyard.gateway.batch import compare, generate_batch
from modelyard.gateway.core import GatewayCore
from modelyard.gateway.guarded import SecurityStages
from modelyard.gateway.input_limits import OpenStreams
from modelyard.gateway.response_cache import CachedGateway, ResponseCache
from modelyard.ratelimit.caller import api_key_from_metadata
from modelyard.v1 import gateway_pb2, gateway_pb2_grpc

Ctx = grpc.aio.ServicerContext[Any, Any]


class GatewayServicer(gateway_pb2_grpc.GatewayServiceServicer):
    def __init__(
        self,
        core: GatewayCore,
        cache: ResponseCache | None = None,
        stages: SecurityStages | None = None,
    ) -> None:
        self._core = core
        stages = stages or SecurityStages()
        # Without a cache (the default) Generate and GenerateStream call the core itself;
        # every call passes the security stages first and last (`guarded.py`).
        self._answers = stages.around(core if cache is None else CachedGateway(core, cache), core)
        self._items = stages.around(core, core)  # batch items and Compare, as ever uncached
        self._streams = OpenStreams(core.settings.input_limits.max_streams_per_key)

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
        with self._streams.holding(api_key):  # TooManyStreams before anything is done
            chunks = self._answers.generate_stream(request, deadline, api_key)
            async with aclosing(chunks):
                async for chunk in chunks:
                    yield chunk

    async def BatchGenerate(
        self, request: gateway_pb2.BatchGenerateRequest, context: Ctx
    ) -> gateway_pb2.BatchGenerateResponse:
        api_key = api_key_from_metadata(context.invocation_metadata())
        deadline = self._core.deadline(context.time_remaining())
        results = await generate_batch(self._items, request.requests, deadline, api_key)
        return gateway_pb2.BatchGenerateResponse(results=results)

    async def Compare(
        self, request: gateway_pb2.CompareRequest, context: Ctx
    ) -> gateway_pb2.CompareResponse:
        api_key = api_key_from_metadata(context.invocation_metadata())
        deadline = self._core.deadline(context.time_remaining())
        results = await compare(self._items, request, deadline, api_key)
        return gateway_pb2.CompareResponse(results=results)

    async def Embed(
        self, request: gateway_pb2.EmbedRequest, context: Ctx
    ) -> gateway_pb2.EmbedResponse:
        api_key = api_key_from_metadata(context.invocation_metadata())
        deadline = self._core.deadline(context.time_remaining())
        return await self._items.embed(request, deadline, api_key)  # the stages, uncached
