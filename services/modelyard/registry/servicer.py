"""RegistryService over the catalog domain (catalog, versions, providers, discovery)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import grpc

from modelyard.registry.catalog import Catalog
from modelyard.registry.discovery_loop import DiscoveryLoop
from modelyard.registry.providers import Providers
from modelyard.registry.versions import ModelVersions
from modelyard_client.errors import FailedPrecondition, InvalidRequest
from modelyard_client.v1 import common_pb2, registry_pb2, registry_pb2_grpc

Ctx = grpc.aio.ServicerContext[Any, Any]


@dataclass
class Registry:
    """The registry's domain objects, built over one catalog."""

    catalog: Catalog
    versions: ModelVersions = field(init=False)
    providers: Providers = field(init=False)
    discovery: DiscoveryLoop | None = None

    def __post_init__(self) -> None:
        self.versions = ModelVersions(self.catalog)
        self.providers = Providers(self.catalog)


class RegistryServicer(registry_pb2_grpc.RegistryServiceServicer):
    def __init__(self, registry: Registry) -> None:
        self._r = registry

    async def RegisterModel(
        self, request: registry_pb2.RegisterModelRequest, context: Ctx
    ) -> common_pb2.ModelEntry:
        return self._r.catalog.register(
            request.model, upsert=request.upsert, merge_deployments=request.merge_deployments
        )

    async def RegisterModelVersion(
        self, request: registry_pb2.RegisterModelVersionRequest, context: Ctx
    ) -> common_pb2.ModelEntry:
        return self._r.versions.register(request.model, make_current=request.make_current)

    async def ListModelVersions(
        self, request: registry_pb2.ListModelVersionsRequest, context: Ctx
    ) -> registry_pb2.ListModelsResponse:
        return registry_pb2.ListModelsResponse(
            models=self._r.versions.list(request.id), revision=self._r.catalog.revision
        )

    async def PinModelVersion(
        self, request: registry_pb2.PinModelVersionRequest, context: Ctx
    ) -> common_pb2.ModelEntry:
        return self._r.versions.pin(request.id, request.version)

    async def UnregisterModel(
        self, request: registry_pb2.UnregisterModelRequest, context: Ctx
    ) -> registry_pb2.UnregisterModelResponse:
        return registry_pb2.UnregisterModelResponse(revision=self._r.catalog.unregister(request.id))

    async def GetModel(
        self, request: registry_pb2.GetModelRequest, context: Ctx
    ) -> common_pb2.ModelEntry:
        if request.version:
            return self._r.versions.get(request.id, request.version)
        return self._r.catalog.get(request.id)

    async def ListModels(
        self, request: registry_pb2.ListModelsRequest, context: Ctx
    ) -> registry_pb2.ListModelsResponse:
        models = self._r.catalog.list(
            provider=request.provider,
            backend=request.backend,
            capabilities=request.capabilities,
            include_unavailable=request.include_unavailable,
        )
        return registry_pb2.ListModelsResponse(models=models, revision=self._r.catalog.revision)

    async def UpdateHealth(
        self, request: registry_pb2.UpdateHealthRequest, context: Ctx
    ) -> common_pb2.ModelEntry:
        return self._r.catalog.update_health(request.id, request.health, request.reason)

    async def UpdatePerformance(
        self, request: registry_pb2.UpdatePerformanceRequest, context: Ctx
    ) -> common_pb2.ModelEntry:
        perf = request.performance
        for desc, value in perf.ListFields():
            if isinstance(value, float) and not (math.isfinite(value) and value >= 0):
                raise InvalidRequest(f"performance.{desc.name} must be a finite number >= 0")
        entry = common_pb2.ModelEntry()
        entry.CopyFrom(self._r.catalog.get(request.id))
        entry.performance.CopyFrom(perf)
        return self._r.catalog.put(entry)

    async def UpdateQuality(
        self, request: registry_pb2.UpdateQualityRequest, context: Ctx
    ) -> common_pb2.ModelEntry:
        return self._r.catalog.update_quality(request.id, request.quality)

    async def WatchModels(
        self, request: registry_pb2.WatchModelsRequest, context: Ctx
    ) -> AsyncIterator[registry_pb2.ModelChange]:
        watch = self._r.catalog.watch(request.after_revision, request.catalog_id)
        async with aclosing(watch) as changes:
            async for change in changes:
                yield change

    async def AddProvider(
        self, request: registry_pb2.AddProviderRequest, context: Ctx
    ) -> registry_pb2.Provider:
        return self._r.providers.add(request.provider)

    async def RemoveProvider(
        self, request: registry_pb2.RemoveProviderRequest, context: Ctx
    ) -> registry_pb2.RemoveProviderResponse:
        count = self._r.providers.remove(request.name)
        return registry_pb2.RemoveProviderResponse(models_made_unavailable=count)

    async def ListProviders(
        self, request: registry_pb2.ListProvidersRequest, context: Ctx
    ) -> registry_pb2.ListProvidersResponse:
        return registry_pb2.ListProvidersResponse(providers=self._r.providers.list())

    async def Discover(
        self, request: registry_pb2.DiscoverRequest, context: Ctx
    ) -> registry_pb2.DiscoverResponse:
        if self._r.discovery is None:
            raise FailedPrecondition("this registry has no discovery sources configured")
        result = await self._r.discovery.run_once(request.provider)
        return registry_pb2.DiscoverResponse(
            added=result.added, updated=result.updated, removed=result.removed, errors=result.errors
        )
