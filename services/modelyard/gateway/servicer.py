"""GatewayService over `GatewayCore`: behind the security stages (`guarded.py`), through the
response cache when one is configured."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable
from contextlib import aclosing
from typing import Any

import grpc

from modelyard.evaluation.service import StoreQuality, evaluate_models
from modelyard.gateway.batch import compare, generate_batch
from modelyard.gateway.core import GatewayCore
from modelyard.gateway.guarded import SecurityStages
from modelyard.gateway.input_limits import OpenStreams
from modelyard.gateway.metrics import model_metrics, provider_metrics
from modelyard.gateway.request_limits import check_bounds
from modelyard.gateway.response_cache import CachedGateway, ResponseCache
from modelyard.meters.gateway_calls import GatewayCallMeter
from modelyard.ratelimit.caller import api_key_from_metadata
from modelyard_client.errors import ModelNotFound
from modelyard_client.v1 import gateway_pb2, gateway_pb2_grpc

Ctx = grpc.aio.ServicerContext[Any, Any]


class GatewayServicer(gateway_pb2_grpc.GatewayServiceServicer):
    def __init__(
        self,
        core: GatewayCore,
        cache: ResponseCache | None = None,
        stages: SecurityStages | None = None,
        meter: GatewayCallMeter | None = None,
    ) -> None:
        self._core = core
        stages = stages or SecurityStages()
        # Without a cache (the default) Generate and GenerateStream call the core itself;
        # every call passes the security stages first and last (`guarded.py`); `meter`
        # records each answer (`modelyard.meters.gateway_calls`).
        lookups = meter.meters.cache_lookups if meter is not None else None
        answers = core if cache is None else CachedGateway(core, cache, lookups)
        self._answers = stages.around(answers, core, meter)
        self._items = stages.around(core, core)  # batch items and Compare, as ever uncached
        self._streams = OpenStreams(core.settings.input_limits.max_streams_per_key)
        # Where EvaluateModel stores each model's quality (the registry's UpdateQuality),
        # set by the assembly once the registry's address is known; None: not stored.
        self.store_quality: StoreQuality | None = None

    # ---- the calls, free of their transport: gRPC here, the HTTP edges (`modelyard.edges`)

    def answer(
        self,
        request: gateway_pb2.GenerateRequest,
        api_key: str | None,
        time_remaining: float | None,
    ) -> Awaitable[gateway_pb2.GenerateResponse]:
        """A Generate: `api_key` the caller's presented key, `time_remaining` its deadline."""
        return self._answers.generate(request, self._core.deadline(time_remaining), api_key)

    async def stream(
        self,
        request: gateway_pb2.GenerateRequest,
        api_key: str | None,
        time_remaining: float | None,
    ) -> AsyncGenerator[gateway_pb2.GenerateChunk, None]:
        """A GenerateStream, counted in the key's open streams while it runs."""
        deadline = self._core.deadline(time_remaining)
        with self._streams.holding(api_key):  # TooManyStreams before anything is done
            # Measured here, in the loop that passes the chunks on (no layer of its own).
            chunks, measure = self._answers.opened(request, deadline, api_key)
            if measure is None:
                async with aclosing(chunks):
                    async for chunk in chunks:
                        yield chunk
                return
            error: BaseException | None = None
            try:
                async with aclosing(chunks):
                    async for chunk in chunks:
                        measure.seen(chunk)
                        yield chunk
            except BaseException as exc:
                error = exc
                raise
            finally:
                measure.ended(error)

    def embed(
        self,
        request: gateway_pb2.EmbedRequest,
        api_key: str | None,
        time_remaining: float | None,
    ) -> Awaitable[gateway_pb2.EmbedResponse]:
        deadline = self._core.deadline(time_remaining)
        return self._items.embed(request, deadline, api_key)  # the stages, uncached

    @property
    def core(self) -> GatewayCore:
        return self._core

    # ---- GatewayService -------------------------------------------------------------

    async def Generate(
        self, request: gateway_pb2.GenerateRequest, context: Ctx
    ) -> gateway_pb2.GenerateResponse:
        api_key = api_key_from_metadata(context.invocation_metadata())
        return await self.answer(request, api_key, context.time_remaining())

    def GenerateStream(
        self, request: gateway_pb2.GenerateRequest, context: Ctx
    ) -> AsyncGenerator[gateway_pb2.GenerateChunk, None]:
        api_key = api_key_from_metadata(context.invocation_metadata())
        return self.stream(request, api_key, context.time_remaining())

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
        return await self.embed(request, api_key, context.time_remaining())

    async def GetModelMetrics(
        self, request: gateway_pb2.GetModelMetricsRequest, context: Ctx
    ) -> gateway_pb2.GetModelMetricsResponse:
        return model_metrics(self._core.performance, self._core.catalog, request)

    async def EvaluateModel(
        self, request: gateway_pb2.EvaluateModelRequest, context: Ctx
    ) -> gateway_pb2.EvaluateModelResponse:
        """A suite on models through this gateway's call path, as the caller (`evaluation`)."""
        check_bounds(request)  # every field within its bound, before any case runs
        api_key = api_key_from_metadata(context.invocation_metadata())

        def ask(case: gateway_pb2.GenerateRequest) -> Awaitable[gateway_pb2.GenerateResponse]:
            return self.answer(case, api_key, None)

        return await evaluate_models(request, ask, self._catalog_id, self.store_quality)

    def _catalog_id(self, name: str) -> str:
        """The catalog id `name` means now: itself, or the model its alias's route serves."""
        core = self._core
        if core.catalog.find(name) is not None:
            return name
        route = core.routes.for_alias(name) if core.routes is not None else None
        if route is not None and route.model_id:
            return route.model_id
        raise ModelNotFound(name)

    async def GetProviderMetrics(
        self, request: gateway_pb2.GetProviderMetricsRequest, context: Ctx
    ) -> gateway_pb2.GetProviderMetricsResponse:
        return provider_metrics(self._core.performance, self._core.catalog, request)
