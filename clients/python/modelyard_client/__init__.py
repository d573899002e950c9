"""A typed Python client for the modelyard gateway and registry.

A failed call raises the exact `modelyard.errors` class the server raised, with
its attributes (`ModelNotFound.model_id`, `RateLimited.retry_after_s`,
`InvalidRequest.field`, `AllModelsFailed.attempts`, ...).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

from modelyard import remote
from modelyard.catalog_limits import CHANNEL_OPTIONS
from modelyard.errors import ModelyardError, remote_errors
from modelyard.remote import Prompt
from modelyard.security.client_channel import client_channel
from modelyard.security.tls import ClientFiles
from modelyard.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

__all__ = ["GatewayClient", "ModelyardError"]

_NAMES = ("ca", "cert", "key")  # how a file's error names it: the argument


def _path(given: str | Path | None) -> Path | None:
    return Path(given).expanduser() if given is not None else None


class GatewayClient:
    """Talks to a modelyard server (the embedded stack answers every service on one address)."""

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
        """`ca`: the PEM CA that signed the server's certificate (TLS); `cert` and `key`:
        this client's PEM certificate and key, for a server that requires one (mTLS).
        None of them: plaintext. A missing or broken file raises `ConfigError` naming it.
        `api_key`: the gateway API key every call presents (servers that require keys)."""
        files = ClientFiles(ca=_path(ca), cert=_path(cert), key=_path(key), names=_NAMES)
        # ListModels carries whole catalog entries: take what the registry may send.
        self._channel = client_channel(address, files, CHANNEL_OPTIONS, api_key)
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

    def embed(
        self, model: str, inputs: Sequence[str], *, dimensions: int = 0
    ) -> gateway_pb2.EmbedResponse:
        """One vector per input, in order (`EmbedResponse.embeddings[i].values`), with the
        input tokens and their cost; `dimensions` 0: the model's own length."""
        request = gateway_pb2.EmbedRequest(model=model, inputs=inputs, dimensions=dimensions)
        with remote_errors():
            response: gateway_pb2.EmbedResponse = gateway_pb2_grpc.GatewayServiceStub(
                self._channel
            ).Embed(request, timeout=self._timeout_s)
        return response

    def models(self) -> list[common_pb2.ModelEntry]:
        """Every model in the catalog."""
        return remote.list_models(self._channel, self._timeout_s)
