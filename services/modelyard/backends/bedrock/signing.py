"""Signing Bedrock requests: AWS Signature Version 4, with credentials from the AWS chain.

The credentials come from botocore's standard chain, the one the AWS CLI and
SDKs use: the ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (and
``AWS_SESSION_TOKEN``) variables, then the named profile of the shared config
and credentials files (``profile``, else ``AWS_PROFILE``, else ``default``;
SSO and assume-role profiles included), then a container or EC2 instance
role. They are resolved once, off the event loop (the chain may ask the
instance metadata service), and kept: temporary ones (a role's, an SSO
session's) are refreshed by botocore when they near their expiry, again off
the loop. Each request is signed when it is sent, with the credentials as
they are then, by botocore's own `SigV4Auth` for the signing name
``bedrock`` and the configured region.

The secret key and session token never reach a log or an error: they are
registered with `modelyard_client.scrub` as soon as they are read, and the errors
here name the chain's sources, never a value.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials, RefreshableCredentials
from botocore.exceptions import BotoCoreError, ClientError

from modelyard_client.errors import ProviderAuthFailed
from modelyard_client.scrub import register_secret, upstream_text

SIGNING_NAME = "bedrock"  # the service's signing name (bedrock-runtime's endpoint prefix differs)


class RequestSigner:
    """Signs requests to Bedrock Runtime for one region with the chain's credentials."""

    def __init__(
        self,
        backend: str,
        region: str,
        profile: str | None = None,
        *,
        credentials: Credentials | None = None,
    ) -> None:
        """`credentials`: ones already at hand (botocore's, refreshable or not), instead of
        the chain's."""
        self._backend = backend
        self._region = region
        self._profile = profile
        self._credentials: Credentials | None = credentials
        self._registered: ReadOnlyCredentials | None = None

    @property
    def region(self) -> str:
        return self._region

    def _chain(self) -> str:
        profile = f"profile '{self._profile}'" if self._profile else "the default profile"
        return (
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            f"{profile} of the AWS config files, the container or instance role"
        )

    def _resolve(self) -> Credentials:
        """botocore's credential chain (blocking: it may ask the instance metadata service)."""
        try:
            session = botocore.session.Session(profile=self._profile)
            credentials = session.get_credentials()
        except (BotoCoreError, ClientError) as exc:
            raise ProviderAuthFailed(
                f"backend '{self._backend}' could not read its AWS credentials "
                f"({self._chain()}): {upstream_text(str(exc))}"
            ) from exc
        if credentials is None:
            raise ProviderAuthFailed(
                f"backend '{self._backend}' found no AWS credentials for this gateway "
                f"(looked in {self._chain()})"
            )
        return credentials

    async def resolve(self) -> None:
        """Find the credentials now (at start), so the first call does not wait for it."""
        if self._credentials is None:
            self._credentials = await asyncio.to_thread(self._resolve)

    async def current(self) -> ReadOnlyCredentials:
        """The credentials to sign with now: resolved on first need, refreshed near expiry."""
        credentials = self._credentials
        if credentials is None:
            credentials = self._credentials = await asyncio.to_thread(self._resolve)
        try:
            if isinstance(credentials, RefreshableCredentials) and credentials.refresh_needed():
                frozen = await asyncio.to_thread(credentials.get_frozen_credentials)
            else:
                frozen = credentials.get_frozen_credentials()
        except (BotoCoreError, ClientError) as exc:
            raise ProviderAuthFailed(
                f"backend '{self._backend}' could not refresh its AWS credentials "
                f"({self._chain()}): {upstream_text(str(exc))}"
            ) from exc
        if frozen != self._registered:
            for value in (frozen.secret_key or "", frozen.token or ""):
                register_secret(value)
            self._registered = frozen
        return frozen

    async def headers(self, url: str, body: bytes, accept: str) -> dict[str, str]:
        """The headers of a signed ``POST url`` with `body`: Content-Type, Accept, X-Amz-Date,
        X-Amz-Security-Token (temporary credentials) and Authorization."""
        credentials = await self.current()
        return sign(credentials, self._region, url, body, {"Accept": accept})


def sign(
    credentials: ReadOnlyCredentials,
    region: str,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
) -> dict[str, str]:
    """SigV4 over ``POST url`` with a JSON `body` and `headers`; the headers to send.

    The Host is signed as aiohttp sends it (the URL's host, with its port unless the
    scheme's default), so the request must go out with exactly these headers and bytes.
    """
    request = AWSRequest(
        method="POST", url=url, data=body, headers={"Content-Type": "application/json", **headers}
    )
    SigV4Auth(credentials, SIGNING_NAME, region).add_auth(request)
    return {name: str(value) for name, value in request.headers.items()}
