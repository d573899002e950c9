"""Who is calling: the API key a gRPC caller presents."""

from __future__ import annotations

from collections.abc import Iterable

from modelyard_client.channel import API_KEY_HEADER

AUTHORIZATION_HEADER = "authorization"


def api_key_from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The caller's key from `x-api-key`, else from `authorization: Bearer ...`; None if absent."""
    bearer: str | None = None
    for name, value in metadata or ():
        text = value.decode(errors="replace") if isinstance(value, bytes) else value
        key = name.lower()
        if key == API_KEY_HEADER and text.strip():
            return text.strip()
        if key == AUTHORIZATION_HEADER and bearer is None:
            scheme, _, credential = text.strip().partition(" ")
            if scheme.lower() == "bearer" and credential.strip():
                bearer = credential.strip()
    return bearer
