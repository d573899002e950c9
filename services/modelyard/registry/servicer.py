"""RegistryService over the `Catalog` domain."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import grpc

from modelyard.errors import Unimplemented
from modelyard.registry.catalog import Catalog
from modelyard.server.runtime import ServiceBinding
from modelyard.server.unimplemented import with_unimplemented
from modelyard.v1 import common_pb2, registry_pb2, registry_pb2_grpc

Ctx = grpc.aio.ServicerContext[Any, Any]


class RegistryServicer(registry_pb2_grpc.RegistryServiceServicer):
    """RPCs not defined here fall to the generated base and answer UNIMPLEMENTED."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    async def RegisterModel(
        self, request: registry_pb2.RegisterModelRequest, context: Ctx
    ) -> common_pb2.ModelEntry:
        return self._catalog.register(request.model, upsert=request.upsert)

    async def UnregisterModel(
        self, request: registry_pb2.UnregisterModelRequest, context: Ctx
    ) -> registry_pb2.UnregisterModelResponse:
        return registry_pb2.UnregisterModelResponse(revision=self._catalog.unregister(request.id))

    async def GetModel(
        self, request: registry_pb2.GetModelRequest, context: Ctx
    ) -> common_pb2.ModelEntry:
        if request.version:
            raise Unimplemented("GetModel by version is not implemented yet")
        return self._catalog.get(request.id)

    async def ListModels(
        self, request: registry_pb2.ListModelsRequest, context: Ctx
    ) -> registry_pb2.ListModelsResponse:
        models = self._catalog.list(
            provider=request.provider,
            backend=request.backend,
            capabilities=request.capabilities,
            include_unavailable=request.include_unavailable,
        )
        return registry_pb2.ListModelsResponse(models=models, revision=self._catalog.revision)

    async def UpdateHealth(
        self, request: registry_pb2.UpdateHealthRequest, context: Ctx
    ) -> common_pb2.ModelEntry:
        return self._catalog.update_health(request.id, request.health, request.reason)

    async def WatchModels(
        self, request: registry_pb2.WatchModelsRequest, context: Ctx
    ) -> AsyncGenerator[registry_pb2.ModelChange, None]:
        async with aclosing(self._catalog.watch(request.after_revision)) as changes:
            async for change in changes:
                yield change


def registry_binding(catalog: Catalog) -> ServiceBinding:
    servicer = with_unimplemented(RegistryServicer, catalog)
    return ServiceBinding(
        name=registry_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name,
        register=lambda server: registry_pb2_grpc.add_RegistryServiceServicer_to_server(
            servicer, server
        ),
    )
