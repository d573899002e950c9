"""Who is calling: a presented API key becomes a `Principal`, or the call is refused.

`Authenticator.authenticate` hashes every presented key (none presented: the
empty one) with the server secret and looks the digest up in a table held in
memory. An unknown, expired, revoked or missing key gets the same
`Unauthenticated`, with the same message, along the same path: one HMAC, one
dictionary lookup, one comparison — nothing that depends on which case it is
(a revoked key is simply not in the table). Keys are never compared as text.

The table is the store's keys (`keys.KeyStore`) plus the fixed keys of the
configuration (the bootstrap admin key, the service key). `follow` keeps it in
step: it polls the store's revision every `refresh_interval` (a change made by
any replica sharing the store is seen within it) and, with a Redis URL, also
listens on `CHANNEL`, where `changed` publishes each write made through this
server, for an immediate reload.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from modelyard.security.keys import KeyDigester, KeyStore
from modelyard.security.principal import Principal
from modelyard.security.scopes import check_rpc
from modelyard_client.errors import Unauthenticated

log = logging.getLogger(__name__)

# Redis pub/sub channel on which a key change is announced to the other replicas.
CHANNEL = "modelyard:keys:changed"
REFUSED = "a valid modelyard API key is required (in the x-api-key header, or as a Bearer token)"


@dataclass(frozen=True, slots=True)
class _Credential:
    principal: Principal
    valid_until: float | None  # epoch seconds; None: no end


class Authenticator:
    """The keys this server accepts, kept in step with the store."""

    def __init__(
        self,
        digester: KeyDigester,
        store: KeyStore | None = None,
        fixed: Sequence[tuple[str, Principal]] = (),
        *,
        now: Callable[[], float] = time.time,
        redis_url: str | None = None,
    ) -> None:
        """`fixed`: (key, principal) pairs from the configuration, valid as long as it says."""
        self._digester = digester
        self._store = store
        self._now = now
        self._redis_url = redis_url
        self._fixed = {digester.digest(key): _Credential(p, None) for key, p in fixed if key}
        self._table = dict(self._fixed)
        self._revision = -1
        self.refresh()

    @property
    def store(self) -> KeyStore | None:
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def authenticate(self, presented: str | None) -> Principal:
        """The principal of `presented`; `Unauthenticated` (one message) for any other case."""
        key = presented or ""
        found = self._table.get(self._digester.digest(key))
        now = self._now()
        if found is None or not key or (found.valid_until is not None and now >= found.valid_until):
            raise Unauthenticated(REFUSED)
        return found.principal

    def admit(self, presented: str | None, rpc: str) -> Principal:
        """Authenticate, then check the RPC's scope (`PermissionDenied`)."""
        principal = self.authenticate(presented)
        check_rpc(principal, rpc)
        return principal

    def refresh(self) -> bool:
        """Reload the table when the store's revision moved; whether it did."""
        if self._store is None:
            return False
        revision = self._store.revision()  # read before the keys: a later write reloads again
        if revision == self._revision:
            return False
        table = dict(self._fixed)
        for record in self._store.list():
            principal = record.principal()
            for digest, until in record.digests():
                table[digest] = _Credential(principal, until)
        self._table, self._revision = table, revision
        return True

    async def changed(self) -> None:
        """A write went through this server: reload now and tell the other replicas."""
        self.refresh()
        if self._redis_url is None:
            return
        try:
            import redis.asyncio as aioredis

            client = aioredis.Redis.from_url(self._redis_url, socket_timeout=1.0)
            try:
                await client.publish(CHANNEL, str(self._revision))
            finally:
                await client.aclose()
        except Exception as exc:  # the poll still carries it, within refresh_interval
            log.warning("could not announce a key change on Redis: %s", type(exc).__name__)

    async def follow(self, interval_s: float) -> None:
        """Keep the table in step with the store until cancelled."""
        listener = None
        if self._redis_url is not None and self._store is not None:
            listener = asyncio.create_task(self._listen(self._redis_url))
        try:
            while True:
                await asyncio.sleep(interval_s)
                self._refresh_logged()
        finally:
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener

    def _refresh_logged(self) -> None:
        try:
            self.refresh()
        except Exception:
            log.exception("could not read the key store; keeping the keys as they were")

    async def _listen(self, url: str) -> None:
        import redis.asyncio as aioredis

        delay = 0.5
        while True:
            try:
                client = aioredis.Redis.from_url(url)
                try:
                    async with client.pubsub() as pubsub:
                        await pubsub.subscribe(CHANNEL)
                        delay = 0.5
                        self._refresh_logged()  # what changed before the subscription
                        async for message in pubsub.listen():
                            if message.get("type") == "message":
                                self._refresh_logged()
                finally:
                    await client.aclose()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The type only: a Redis error can quote the URL, password and all.
                log.warning(
                    "key change channel on Redis lost (%s); polling meanwhile",
                    type(exc).__name__,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
