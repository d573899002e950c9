"""A typed Python client for the modelyard gateway and registry."""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType
from typing import cast

import grpc

from modelyard.errors import ModelyardError, error_from_status
from modelyard.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
)

__all__ = ["GatewayClient", "ModelyardError"]


class GatewayClient:
    """Talks to a modelyard server (the embedded stack answers every service on one address)."""

    def __init__(self, address: str = "127.0.0.1:50051", *, timeout_s: float = 600.0) -> None:
        self._channel = grpc.insecure_channel(address)
        self._gateway = gateway_pb2_grpc.GatewayServiceStub(self._channel)
        self._registry = registry_pb2_grpc.RegistryServiceStub(self._channel)
        self._timeout_s = timeout_s

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def generate(
        self, model: str, prompt: str | list[tuple[str, str]], *, max_tokens: int = 0
    ) -> gateway_pb2.GenerateResponse:
        """One whole answer. `prompt` is text, or chat messages as (role, content) pairs."""
        try:
            response: gateway_pb2.GenerateResponse = self._gateway.Generate(
                _request(model, prompt, max_tokens), timeout=self._timeout_s
            )
        except grpc.RpcError as exc:
            raise _error(exc) from None
        return response

    def stream(
        self, model: str, prompt: str | list[tuple[str, str]], *, max_tokens: int = 0
    ) -> Iterator[str]:
        """The answer's text piece by piece, as the model produces it."""
        call = self._gateway.GenerateStream(
            _request(model, prompt, max_tokens), timeout=self._timeout_s
        )
        try:
            for chunk in call:
                if chunk.text:
                    yield chunk.text
        except grpc.RpcError as exc:
            raise _error(exc) from None
        finally:
            call.cancel()  # type: ignore[no-untyped-call]

    def models(self) -> list[common_pb2.ModelEntry]:
        try:
            response = self._registry.ListModels(
                registry_pb2.ListModelsRequest(), timeout=self._timeout_s
            )
        except grpc.RpcError as exc:
            raise _error(exc) from None
        return list(response.models)


def _request(
    model: str, prompt: str | list[tuple[str, str]], max_tokens: int
) -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=model)
    if isinstance(prompt, str):
        request.input.text = prompt
    else:
        for role, content in prompt:
            request.input.chat.messages.add(role=role, content=content)
    request.params.max_tokens = max_tokens
    return request


def _error(exc: grpc.RpcError) -> ModelyardError:
    call = cast(grpc.Call, exc)  # grpc raises objects that are both RpcError and Call
    trailers = tuple((k, v) for k, v in call.trailing_metadata() or ())
    return error_from_status(call.code(), call.details() or "", trailers)
