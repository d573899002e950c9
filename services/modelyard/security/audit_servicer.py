"""AuditService: the audit log read back, filtered (ADMIN scope, `security/scopes.py`).

Decode the filters, query the store (`audit.AuditStore`) in a worker thread,
encode the rows. Rows the writer has not flushed yet are written first, so a
call just made is in the answer.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from modelyard.security.audit import MAX_QUERY_ROWS, AuditLog, AuditQuery, AuditRow
from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import audit_pb2, audit_pb2_grpc

# Filters are compared with stored names: none longer than the gateway lets a request hold.
_FILTER_CHARS = 256


class AuditServicer(audit_pb2_grpc.AuditServiceServicer):
    def __init__(self, audit: AuditLog) -> None:
        self._audit = audit

    async def QueryAudit(
        self, request: audit_pb2.QueryAuditRequest, context: Any
    ) -> audit_pb2.QueryAuditResponse:
        query = query_of(request)
        await self._audit.flush()
        rows, more = await asyncio.to_thread(self._audit.store.query, query)
        return audit_pb2.QueryAuditResponse(entries=[entry_of(row) for row in rows], more=more)


def query_of(request: audit_pb2.QueryAuditRequest) -> AuditQuery:
    """The store's query for `request`; `InvalidRequest` naming a field out of bounds."""
    for name in ("key_id", "rpc", "model", "outcome"):
        value = getattr(request, name)
        if len(value) > _FILTER_CHARS:
            raise InvalidRequest(
                f"{name} is {len(value)} characters long; the limit is {_FILTER_CHARS}",
                field=name,
            )
    if request.limit > MAX_QUERY_ROWS:
        raise InvalidRequest(
            f"limit {request.limit} is above {MAX_QUERY_ROWS:,}; page with `until`",
            field="limit",
        )
    since = _seconds(request.since) if request.HasField("since") else None
    until = _seconds(request.until) if request.HasField("until") else None
    if since is not None and until is not None and until <= since:
        raise InvalidRequest("until must be after since", field="until")
    return AuditQuery(
        key_id=request.key_id,
        rpc=request.rpc,
        model=request.model,
        outcome=request.outcome,
        since=since,
        until=until,
        limit=request.limit,
    )


def entry_of(row: AuditRow) -> audit_pb2.AuditEntry:
    return audit_pb2.AuditEntry(
        seq=row.seq,
        at=_timestamp(row.at),
        key_id=row.key_id,
        rpc=row.rpc,
        model_requested=row.model_requested,
        model_served=row.model_served,
        tokens_in=row.tokens_in,
        tokens_out=row.tokens_out,
        cost_usd=row.cost_usd,
        code=row.code,
        reason=row.reason,
        latency_ms=row.latency_ms,
    )


def _seconds(stamp: Timestamp) -> float:
    return stamp.seconds + stamp.nanos / 1e9


def _timestamp(epoch_s: float) -> Timestamp:
    fraction, whole = math.modf(epoch_s)
    return Timestamp(seconds=int(whole), nanos=int(fraction * 1e9))
