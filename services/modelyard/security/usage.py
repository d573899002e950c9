"""Usage: the audit log's data-plane rows summed per key, model, UTC day or UTC hour.

The audit row is the usage record (`audit.py`): every call of GatewayService
(Generate, GenerateStream, BatchGenerate, Compare, Embed; the HTTP API's calls
are recorded under these names) has one, with its key id, the model asked for
and served, tokens, cost, latency, time to the first piece, outcome and model
attempts. `usage_of` sums the rows a `UsageQuery` selects in one statement, the
same SQL on SQLite and PostgreSQL, so the groups and the total are of the
same rows even while calls are being written: per group the calls, those that
did not end OK, tokens in and out, cost, the latency's nearest-rank p50 and
p95 (exact: a window over the matching rows), the mean time to the first
piece over the calls that had one, and the attempts. Retention is the audit
log's: a pruned row is gone from the usage too.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from modelyard.security.audit import AuditStore, row_filter

MAX_USAGE_GROUPS = 10_000
# The calls that use models: one service's.
DATA_PLANE_RPCS = "modelyard.v1.GatewayService/%"
_DAY_S, _HOUR_S = 86_400, 3_600


class Grouping(enum.Enum):
    KEY = "key"
    MODEL = "model"
    DAY = "day"
    HOUR = "hour"


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """Which rows to sum (every filter set must match) and how to group them."""

    key_id: str = ""
    model: str = ""  # asked for or served
    since: float | None = None  # epoch seconds
    until: float | None = None
    group_by: Grouping = Grouping.MODEL


@dataclass(frozen=True, slots=True)
class UsageGroup:
    group: str  # the key id, the model, "2026-12-02", "2026-12-02T03:00Z"; "" for the total
    requests: int
    errors: int
    tokens_in: int
    tokens_out: int
    cost_usd: float
    latency_p50_ms: float
    latency_p95_ms: float
    mean_ttft_ms: float
    attempts: int


@dataclass(frozen=True, slots=True)
class Usage:
    groups: list[UsageGroup]  # in order of their group; at most MAX_USAGE_GROUPS
    total: UsageGroup  # every matching row
    more: bool  # groups were left out past MAX_USAGE_GROUPS


def _floor_div(column: str, by: int) -> str:
    """``floor(column / by)`` for a non-negative REAL, the same on both engines: a CAST
    to INTEGER truncates on SQLite and rounds on PostgreSQL, so one that rounded up is
    taken back by one (SQLite has no floor() without its math functions)."""
    cast = f"CAST({column} / {by} AS INTEGER)"
    return f"({cast} - CASE WHEN {cast} * {by} > {column} THEN 1 ELSE 0 END)"


_GROUP_SQL = {
    Grouping.KEY: "key_id",
    Grouping.MODEL: "CASE WHEN model_served <> '' THEN model_served ELSE model_requested END",
    Grouping.DAY: _floor_div("at", _DAY_S),
    Grouping.HOUR: _floor_div("at", _HOUR_S),
}


def _sums(place: str, count: str) -> str:
    """The aggregate columns of one output row; `place`/`count`: a row's latency rank
    in its group and the group's size (nearest rank p: the ceil(count * p)-th)."""
    return f"""COUNT(*),
    CAST(COALESCE(SUM(CASE WHEN code = 'OK' THEN 0 ELSE 1 END), 0) AS INTEGER),
    CAST(COALESCE(SUM(tokens_in), 0) AS INTEGER),
    CAST(COALESCE(SUM(tokens_out), 0) AS INTEGER),
    COALESCE(SUM(cost_usd), 0.0),
    COALESCE(MAX(CASE WHEN {place} = ({count} * 50 + 99) / 100 THEN latency_ms END), 0.0),
    COALESCE(MAX(CASE WHEN {place} = ({count} * 95 + 99) / 100 THEN latency_ms END), 0.0),
    COALESCE(AVG(CASE WHEN ttft_ms > 0 THEN ttft_ms END), 0.0),
    CAST(COALESCE(SUM(attempts), 0) AS INTEGER)"""


def usage_sql(query: UsageQuery) -> tuple[str, tuple[Any, ...]]:
    """One statement: a row per group (first column 0), then the total (1)."""
    where, args = row_filter(query.key_id, query.model, query.since, query.until)
    where.insert(0, "rpc LIKE ?")
    args.insert(0, DATA_PLANE_RPCS)
    sql = f"""WITH matched AS (
    SELECT {_GROUP_SQL[query.group_by]} AS grp, code, tokens_in, tokens_out, cost_usd,
        latency_ms, ttft_ms, attempts
    FROM audit WHERE {" AND ".join(where)}
), ranked AS (
    SELECT matched.*,
        ROW_NUMBER() OVER (PARTITION BY grp ORDER BY latency_ms) AS place,
        COUNT(*) OVER (PARTITION BY grp) AS n,
        ROW_NUMBER() OVER (ORDER BY latency_ms) AS place_all,
        COUNT(*) OVER () AS n_all
    FROM matched
)
SELECT 0 AS whole, grp, {_sums("place", "n")} FROM ranked GROUP BY grp
UNION ALL
SELECT 1 AS whole, NULL, {_sums("place_all", "n_all")} FROM ranked
ORDER BY 1, 2"""
    return sql, tuple(args)


def usage_of(store: AuditStore, query: UsageQuery) -> Usage:
    """The usage `query` selects, from `store`'s rows (a blocking read: a worker thread's)."""
    sql, args = usage_sql(query)
    rows = store.read(sql, args)
    groups = [_group(query.group_by, row) for row in rows if row[0] == 0]
    (total,) = [_group(None, row) for row in rows if row[0] == 1]
    more = len(groups) > MAX_USAGE_GROUPS
    return Usage(groups[:MAX_USAGE_GROUPS], total, more)


def _group(grouping: Grouping | None, row: tuple[Any, ...]) -> UsageGroup:
    return UsageGroup(
        _label(grouping, row[1]),
        int(row[2]),
        int(row[3]),
        int(row[4]),
        int(row[5]),
        float(row[6]),
        float(row[7]),
        float(row[8]),
        float(row[9]),
        int(row[10]),
    )


def _label(grouping: Grouping | None, value: Any) -> str:
    if grouping is None:
        return ""
    if grouping is Grouping.DAY:
        return datetime.fromtimestamp(int(value) * _DAY_S, UTC).strftime("%Y-%m-%d")
    if grouping is Grouping.HOUR:
        return datetime.fromtimestamp(int(value) * _HOUR_S, UTC).strftime("%Y-%m-%dT%H:00Z")
    return str(value)
