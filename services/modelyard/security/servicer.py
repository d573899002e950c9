"""KeyService: create, list, get, rotate and revoke gateway API keys (ADMIN scope).

Decode the request, call the store (`keys.KeyStore`), encode the answer; after
each write the authenticator reloads and tells the other replicas
(`Authenticator.changed`). A secret leaves only in `IssuedKey.secret`: it is
never logged, and the log names keys by id.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from modelyard.security.authn import Authenticator
from modelyard.security.keys import ApiKeyRecord, KeySpec, KeyStore
from modelyard.security.principal import GENERATE, current_principal
from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import keys_pb2, keys_pb2_grpc

log = logging.getLogger(__name__)


class KeyServicer(keys_pb2_grpc.KeyServiceServicer):
    def __init__(self, store: KeyStore, authenticator: Authenticator) -> None:
        self._store = store
        self._authenticator = authenticator

    async def CreateKey(
        self, request: keys_pb2.CreateKeyRequest, context: Any
    ) -> keys_pb2.IssuedKey:
        record, secret = self._store.create(spec_of(request, time.time()))
        await self._authenticator.changed()
        log.info("key %s created for %s by %s", record.id, record.spec.owner, _by())
        return keys_pb2.IssuedKey(key=key_message(record), secret=secret)

    async def ListKeys(
        self, request: keys_pb2.ListKeysRequest, context: Any
    ) -> keys_pb2.ListKeysResponse:
        records = self._store.list(include_revoked=request.include_revoked)
        return keys_pb2.ListKeysResponse(keys=[key_message(r) for r in records])

    async def GetKey(self, request: keys_pb2.GetKeyRequest, context: Any) -> keys_pb2.ApiKey:
        return key_message(self._store.get(request.id))

    async def RotateKey(
        self, request: keys_pb2.RotateKeyRequest, context: Any
    ) -> keys_pb2.IssuedKey:
        record, secret = self._store.rotate(request.id, request.grace_s)
        await self._authenticator.changed()
        log.info("key %s rotated (grace %gs) by %s", record.id, request.grace_s, _by())
        return keys_pb2.IssuedKey(key=key_message(record), secret=secret)

    async def RevokeKey(self, request: keys_pb2.RevokeKeyRequest, context: Any) -> keys_pb2.ApiKey:
        record = self._store.revoke(request.id)
        await self._authenticator.changed()
        log.info("key %s revoked by %s", record.id, _by())
        return key_message(record)


def _by() -> str:
    principal = current_principal()
    return principal.key_id if principal is not None else "?"


# A key's life: past this the expiry is no date a timestamp holds (1e308 s overflowed
# ListKeys for every key; the RPC fuzz test found it).
MAX_EXPIRES_IN_S = 100 * 365.25 * 86_400


def spec_of(request: keys_pb2.CreateKeyRequest, now: float) -> KeySpec:
    """The key a CreateKeyRequest asks for; `InvalidRequest` naming a wrong field."""
    if not 0 <= request.expires_in_s <= MAX_EXPIRES_IN_S:
        raise InvalidRequest(
            f"expires_in_s must be 0 (never) to {MAX_EXPIRES_IN_S:.0f} seconds (100 years), "
            f"got {request.expires_in_s:g}",
            field="expires_in_s",
        )
    spec = KeySpec(
        owner=request.owner,
        team=request.team,
        scopes=tuple(dict.fromkeys(request.scopes)) or (GENERATE,),
        models=tuple(dict.fromkeys(request.models)),
        expires_at=now + request.expires_in_s if request.expires_in_s else None,
        requests_per_minute=request.requests_per_minute or None,
        tokens_per_minute=request.tokens_per_minute or None,
        daily_budget_usd=request.daily_budget_usd or None,
        monthly_budget_usd=request.monthly_budget_usd or None,
    )
    spec.check()
    return spec


def key_message(record: ApiKeyRecord) -> keys_pb2.ApiKey:
    spec = record.spec
    message = keys_pb2.ApiKey(
        id=record.id,
        owner=spec.owner,
        team=spec.team,
        scopes=spec.scopes,
        models=spec.models,
        requests_per_minute=spec.requests_per_minute or 0.0,
        tokens_per_minute=spec.tokens_per_minute or 0.0,
        daily_budget_usd=spec.daily_budget_usd or 0.0,
        monthly_budget_usd=spec.monthly_budget_usd or 0.0,
    )
    for name, at in (
        ("expires_at", spec.expires_at),
        ("created_at", record.created_at),
        ("rotated_at", record.rotated_at),
        ("revoked_at", record.revoked_at),
        ("previous_valid_until", record.previous_valid_until),
    ):
        if at is not None:
            getattr(message, name).CopyFrom(_timestamp(at))
    return message


def _timestamp(epoch_s: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(epoch_s * 1e9))
    return stamp
