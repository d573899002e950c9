"""The credential each call carries: the Gemini API's key, or a Vertex AI access token.

The Gemini API (AI Studio) takes its key in the ``x-goog-api-key`` header
(https://ai.google.dev/api#authentication); the key is asked for on every
call, so a key rotated by SIGHUP is sent from the next call on, and is never
logged.

Vertex AI takes an OAuth 2.0 access token, ``Authorization: Bearer``, with the
``cloud-platform`` scope. `ServiceAccountToken` gets it through ``google-auth``:
from the service-account key file given (``credentials_file``), else from
Application Default Credentials (``GOOGLE_APPLICATION_CREDENTIALS``, gcloud's
user credentials, the metadata server). google-auth is synchronous (it signs a
JWT and posts it to the key's ``token_uri``), so loading and refreshing run in
a worker thread, never on the event loop, and one refresh at a time: calls
that find the token expired wait for the same refresh. A token is reused until
google-auth counts it expired (a few minutes before its ``expires_in``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from modelyard_client.errors import BackendUnavailable, ProviderAuthFailed
from modelyard_client.scrub import upstream_text

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"


class CallCredential(Protocol):
    """What an engine asks for the headers that authenticate one call."""

    description: str  # "API key", "service-account credentials": said in auth errors

    async def headers(self) -> dict[str, str]: ...


class ApiKey:
    """The Gemini API's key, as it is at the time of the call."""

    description = "API key for the provider"

    def __init__(self, key: Callable[[], str]) -> None:
        self._key = key

    async def headers(self) -> dict[str, str]:
        key = self._key()
        return {"x-goog-api-key": key} if key else {}


class ServiceAccountToken:
    """A Vertex AI access token from service-account credentials (or ADC), kept fresh."""

    description = "Vertex AI service-account credentials"

    def __init__(self, backend: str, credentials_file: Path | None) -> None:
        self._backend = backend
        self._file = credentials_file
        self._credentials: Any = None  # google.auth.credentials.Credentials, once loaded
        self._transport: Any = None  # google.auth.transport.requests.Request
        self._lock = asyncio.Lock()

    @property
    def source(self) -> str:
        """Where the credentials come from, for messages."""
        return f"'{self._file}'" if self._file else "Application Default Credentials"

    async def headers(self) -> dict[str, str]:
        credentials = self._credentials
        if credentials is None or not credentials.valid:
            async with self._lock:  # one refresh at a time; the others wait for it
                if self._credentials is None:
                    self._credentials = await asyncio.to_thread(self._load)
                credentials = self._credentials
                if not credentials.valid:
                    await asyncio.to_thread(self._refresh, credentials)
        return {"Authorization": f"Bearer {credentials.token}"}

    def _load(self) -> Any:
        import google.auth
        import google.auth.exceptions
        from google.auth.transport.requests import Request
        from google.oauth2 import service_account

        self._transport = Request()
        try:
            if self._file is not None:
                return service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                    str(self._file), scopes=[CLOUD_PLATFORM_SCOPE]
                )
            credentials, _project = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
            return credentials
        except (OSError, ValueError, google.auth.exceptions.GoogleAuthError) as exc:
            raise ProviderAuthFailed(
                f"backend '{self._backend}' could not load its {self.description} from "
                f"{self.source}: {upstream_text(str(exc)) or type(exc).__name__}"
            ) from exc

    def _refresh(self, credentials: Any) -> None:
        import google.auth.exceptions

        try:
            credentials.refresh(self._transport)
        except google.auth.exceptions.TransportError as exc:
            raise BackendUnavailable(
                f"backend '{self._backend}': the token endpoint of its {self.description} "
                f"is unreachable: {upstream_text(str(exc)) or type(exc).__name__}"
            ) from exc
        except google.auth.exceptions.GoogleAuthError as exc:
            raise ProviderAuthFailed(
                f"backend '{self._backend}': the token endpoint refused this gateway's "
                f"{self.description} from {self.source} (not the caller's credentials): "
                f"{upstream_text(str(exc)) or type(exc).__name__}"
            ) from exc
