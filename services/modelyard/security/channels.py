"""The one place a channel to another modelyard service is opened.

Every internal call (gateway → registry and hot-swap, gateway and hot-swap →
backends, backends → registry) goes through `InternalChannels.open`, so the
process's transport security (plaintext, TLS, mTLS with its client
certificate) and whatever credential it presents apply to all of them alike;
a call site that opened its own channel would be the one hole.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc

from modelyard.config.security import TlsConfig
from modelyard.security.tls import internal_client_files
from modelyard_client.channel import ChannelOptions, async_channel


@dataclass(frozen=True)
class InternalChannels:
    """How this process reaches the other services; built once at start from the config."""

    # None: plaintext (security.tls.mode plaintext).
    credentials: grpc.ChannelCredentials | None = None
    # With keys required, the service key each call presents as ``x-api-key`` (the BACKEND
    # scope; a call that sets its own key keeps it); None: nothing.
    service_key: str | None = field(default=None, repr=False)

    @classmethod
    def from_config(cls, tls: TlsConfig) -> InternalChannels:
        """Read the PEM files now (a `ConfigError` naming a bad one, before anything starts)."""
        files = internal_client_files(tls)
        return cls(files.credentials() if files is not None else None)

    def open(self, address: str, options: ChannelOptions = ()) -> grpc.aio.Channel:
        """A channel to the service at `address` ("registry:50051"), secured as configured."""
        return async_channel(
            address, options=options, api_key=self.service_key, credentials=self.credentials
        )


PLAINTEXT = InternalChannels()
