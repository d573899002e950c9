"""AuditService: the audit log read back, filtered, and summed as usage (ADMIN scope,
`security/scopes.py`).

Decode the filters, query the store (`audit.AuditStore`, `usage.usage_of`) in a
worker thread, encode the rows. Rows the writer has not flushed yet are written
first, so a call just made is in the answer.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from modelyard.security.audit import MAX_QUERY_ROWS, AuditLog, AuditQuery, AuditRow
from modelyard.security.usage import Grouping, UsageGroup, UsageQuery, usage_of
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

    async def QueryUsage(
        self, request: audit_pb2.QueryUsageRequest, context: Any
    ) -> audit_pb2.QueryUsageResponse:
        query = usage_query_of(request)
        await self._audit.flush()
        usage = await asyncio.to_thread(usage_of, self._audit.store, query)
        return audit_pb2.QueryUsageResponse(
            groups=[group_of(g) for g in usage.groups],
            total=group_of(usage.total),
            more=usage.more,
        )


def query_of(request: audit_pb2.QueryAuditRequest) -> AuditQuery:
    """The store's query for `request`; `InvalidRequest` naming a field out of bounds."""
    _check_filters(request, ("key_id", "rpc", "model", "outcome"))
    if request.limit > MAX_QUERY_ROWS:
        raise InvalidRequest(
            f"limit {request.limit} is above {MAX_QUERY_ROWS:,}; page with `until`",
            field="limit",
        )
    since, until = _time_range(request)
    return AuditQuery(
        key_id=request.key_id,
        rpc=request.rpc,
        model=request.model,
        outcome=request.outcome,
        since=since,
        until=until,
        limit=request.limit,
    )


_GROUPINGS = {
    audit_pb2.USAGE_GROUPING_UNSPECIFIED: Grouping.MODEL,
    audit_pb2.USAGE_GROUPING_KEY: Grouping.KEY,
    audit_pb2.USAGE_GROUPING_MODEL: Grouping.MODEL,
    audit_pb2.USAGE_GROUPING_DAY: Grouping.DAY,
    audit_pb2.USAGE_GROUPING_HOUR: Grouping.HOUR,
}


def usage_query_of(request: audit_pb2.QueryUsageRequest) -> UsageQuery:
    """The usage query for `request`; `InvalidRequest` naming a field out of bounds."""
    _check_filters(request, ("key_id", "model"))
    grouping = _GROUPINGS.get(request.group_by)
    if grouping is None:
        raise InvalidRequest(
            f"group_by {request.group_by} is not a UsageGrouping; choose from "
            + ", ".join(audit_pb2.UsageGrouping.keys()),
            field="group_by",
        )
    since, until = _time_range(request)
    return UsageQuery(
        key_id=request.key_id, model=request.model, since=since, until=until, group_by=grouping
    )


def _check_filters(request: Message, names: tuple[str, ...]) -> None:
    for name in names:
        value: str = getattr(request, name)
        if len(value) > _FILTER_CHARS:
            raise InvalidRequest(
                f"{name} is {len(value)} characters long; the limit is {_FILTER_CHARS}",
                field=name,
            )


def _time_range(
    request: audit_pb2.QueryAuditRequest | audit_pb2.QueryUsageRequest,
) -> tuple[float | None, float | None]:
    """`since` and `until` in epoch seconds (None: unset); until must be after since."""
    since = _seconds(request.since) if request.HasField("since") else None
    until = _seconds(request.until) if request.HasField("until") else None
    if since is not None and until is not None and until <= since:
        raise InvalidRequest("until must be after since", field="until")
    return since, until


def group_of(group: UsageGroup) -> audit_pb2.UsageGroup:
    return audit_pb2.UsageGroup(
        group=group.group,
        requests=group.requests,
        errors=group.errors,
        tokens_in=group.tokens_in,
        tokens_out=group.tokens_out,
        cost_usd=group.cost_usd,
        latency_p50_ms=group.latency_p50_ms,
        latency_p95_ms=group.latency_p95_ms,
        mean_ttft_ms=group.mean_ttft_ms,
        attempts=group.attempts,
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
        ttft_ms=row.ttft_ms,
        attempts=row.attempts,
    )


def _seconds(stamp: Timestamp) -> float:
    return stamp.seconds + stamp.nanos / 1e9


def _timestamp(epoch_s: float) -> Timestamp:
    fraction, whole = math.modf(epoch_s)
    return Timestamp(seconds=int(whole), nanos=int(fraction * 1e9))
