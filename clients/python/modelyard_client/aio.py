"""`AsyncGatewayClient`: the same calls as `GatewayClient`, for asyncio programs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from types import TracebackType

from modelyard_client import remote
from modelyard_client.channel import async_channel
from modelyard_client.errors import remote_errors
from modelyard_client.gateway_client import client_files
from modelyard_client.remote import Prompt
from modelyard_client.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
)


class AsyncGatewayClient:
    """Talks to a modelyard server from asyncio code; use it as ``async with``.

    A failed call raises the exact `modelyard_client.errors` class the server raised.
    Leaving a `stream` early (``break``, a cancelled task) cancels the call, which
    stops the model upstream.
    """

    def __init__(
        self,
        address: str = "127.0.0.1:50051",
        *,
        timeout_s: float = 600.0,
        ca: str | Path | None = None,
        cert: str | Path | None = None,
        key: str | Path | None = None,
        api_key: str | None = None,
    ) -> None:
        """The arguments of `GatewayClient`: TLS files (read now), the API key."""
        self._channel = async_channel(address, client_files(ca, cert, key), api_key=api_key)
        self._gateway = gateway_pb2_grpc.GatewayServiceStub(self._channel)
        self._timeout_s = timeout_s

    async def __aenter__(self) -> AsyncGatewayClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close(None)

    async def generate(
        self, model: str, prompt: Prompt, *, max_tokens: int = 0
    ) -> gateway_pb2.GenerateResponse:
        """One whole answer. `prompt` is text, or chat messages as (role, content) pairs."""
        request = remote.generate_request(model, prompt, max_tokens)
        with remote_errors():
            response: gateway_pb2.GenerateResponse = await self._gateway.Generate(
                request, timeout=self._timeout_s
            )
        return response

    async def stream(
        self, model: str, prompt: Prompt, *, max_tokens: int = 0
    ) -> AsyncIterator[str]:
        """The answer's text piece by piece, as the model produces it."""
        request = remote.generate_request(model, prompt, max_tokens)
        call = self._gateway.GenerateStream(request, timeout=self._timeout_s)
        try:
            with remote_errors():
                async for chunk in call:
                    if chunk.text:
                        yield chunk.text
        finally:
            call.cancel()

    async def embed(
        self, model: str, inputs: Sequence[str], *, dimensions: int = 0
    ) -> gateway_pb2.EmbedResponse:
        """One vector per input, in order, with the input tokens and their cost."""
        request = gateway_pb2.EmbedRequest(model=model, inputs=inputs, dimensions=dimensions)
        with remote_errors():
            response: gateway_pb2.EmbedResponse = await self._gateway.Embed(
                request, timeout=self._timeout_s
            )
        return response

    async def models(self) -> list[common_pb2.ModelEntry]:
        """Every model in the catalog."""
        registry = registry_pb2_grpc.RegistryServiceStub(self._channel)
        with remote_errors():
            response = await registry.ListModels(
                registry_pb2.ListModelsRequest(), timeout=self._timeout_s
            )
        return list(response.models)
