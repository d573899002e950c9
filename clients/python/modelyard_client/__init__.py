"""A typed Python client for the modelyard gateway and registry.

A failed call raises the exact `modelyard.errors` class the server raised, with
its attributes (`ModelNotFound.model_id`, `RateLimited.retry_after_s`,
`InvalidRequest.field`, `AllModelsFailed.attempts`, ...).
"""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType

import grpc

from modelyard import remote
from modelyard.catalog_limits import CHANNEL_OPTIONS
from modelyard.errors import ModelyardError
from modelyard.remote import Prompt
from modelyard.v1 import common_pb2, gateway_pb2

__all__ = ["GatewayClient", "ModelyardError"]


class GatewayClient:
    """Talks to a modelyard server (the embedded stack answers every service on one address)."""

    def __init__(self, address: str = "127.0.0.1:50051", *, timeout_s: float = 600.0) -> None:
        # ListModels carries whole catalog entries: take what the registry may send.
        self._channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
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
        self, model: str, prompt: Prompt, *, max_tokens: int = 0
    ) -> gateway_pb2.GenerateResponse:
        """One whole answer. `prompt` is text, or chat messages as (role, content) pairs."""
        request = remote.generate_request(model, prompt, max_tokens)
        return remote.generate(self._channel, request, self._timeout_s)

    def stream(self, model: str, prompt: Prompt, *, max_tokens: int = 0) -> Iterator[str]:
        """The answer's text piece by piece, as the model produces it."""
        request = remote.generate_request(model, prompt, max_tokens)
        return remote.stream_text(self._channel, request, self._timeout_s)

    def models(self) -> list[common_pb2.ModelEntry]:
        """Every model in the catalog."""
        return remote.list_models(self._channel, self._timeout_s)
