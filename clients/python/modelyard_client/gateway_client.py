"""`GatewayClient`: blocking calls to a modelyard gateway."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

from modelyard_client import remote
from modelyard_client.channel import blocking_channel
from modelyard_client.errors import remote_errors
from modelyard_client.remote import Prompt
from modelyard_client.tls_files import ClientFiles
from modelyard_client.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

NAMES = ("ca", "cert", "key")  # how a file's error names it: the argument


def client_files(
    ca: str | Path | None, cert: str | Path | None, key: str | Path | None
) -> ClientFiles:
    """The TLS files a client was given, each named in an error by its argument."""

    def path(given: str | Path | None) -> Path | None:
        return Path(given).expanduser() if given is not None else None

    return ClientFiles(ca=path(ca), cert=path(cert), key=path(key), names=NAMES)


class GatewayClient:
    """Talks to a modelyard server (the embedded stack answers every service on one address).

    A failed call raises the exact `modelyard_client.errors` class the server raised.
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
        """`ca`: the PEM CA that signed the server's certificate (TLS); `cert` and `key`:
        this client's PEM certificate and key, for a server that requires one (mTLS).
        None of them: plaintext. A missing or broken file raises `ConfigError` naming it.
        `api_key`: the gateway API key every call presents (servers that require keys)."""
        files = client_files(ca, cert, key)
        self._channel = blocking_channel(address, files, api_key=api_key)
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
