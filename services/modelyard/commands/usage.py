"""`modelyard usage`: what the data plane's calls used, per key, model, day or hour
(AuditService/QueryUsage: the audit log's rows, summed).

Needs an ADMIN key when the server requires keys: ``--api-key``, else
$MODELYARD_API_KEY, else $MODELYARD_ADMIN_KEY. A table, a line per group and
the total last: calls, errors (not OK), tokens in and out, cost, latency p50
and p95, mean time to the first piece and model attempts. ``--json``: the
answer as one JSON object (``groups``, ``total``, ``more``) with the proto's
field names.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format

from modelyard.commands.audit import ADMIN_KEY_ENV
from modelyard.commands.client_options import add_address, add_json
from modelyard.config.durations import parse_duration

GROUPINGS = ("key", "model", "day", "hour")
COLUMNS = (
    "requests",
    "errors",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "p50_ms",
    "p95_ms",
    "ttft_ms",
    "attempts",
)


def register(sub: Any) -> None:
    """Add ``usage`` to the CLI's subparsers."""
    usage = sub.add_parser(
        "usage", help="calls, tokens, cost and latency per key, model, day or hour"
    )
    add_address(usage)
    add_json(usage)
    usage.add_argument(
        "--api-key",
        dest="admin_key",
        default=os.environ.get("MODELYARD_API_KEY") or os.environ.get(ADMIN_KEY_ENV),
        help=f"an ADMIN key (default: $MODELYARD_API_KEY, else ${ADMIN_KEY_ENV})",
    )
    usage.add_argument("--key", default="", help="only this key id ('open': no keys)")
    usage.add_argument("--model", default="", help="only calls that asked for or got this model")
    usage.add_argument(
        "--since", help="from this time: ISO 8601 (UTC unless it says), or ago, e.g. 1h, 7d"
    )
    usage.add_argument("--until", help="before this time, as --since")
    usage.add_argument(
        "--by",
        choices=GROUPINGS,
        default="model",
        help="one line per key, model (the default), UTC day or UTC hour",
    )
    usage.set_defaults(run=run_usage)


def moment(text: str, flag: str, now: float) -> float:
    """Epoch seconds of `text`: an ISO 8601 time (naive: UTC) or a duration before `now`."""
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise SystemExit(
            f"modelyard usage: {flag}: '{text}' is neither an ISO 8601 time "
            "(2026-12-01, 2026-12-01T09:30Z) nor a duration ago (15m, 1h, 7d)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def run_usage(args: argparse.Namespace) -> int:
    from google.protobuf.timestamp_pb2 import Timestamp

    from modelyard.security.client_channel import channel_for
    from modelyard_client.errors import remote_errors
    from modelyard_client.v1 import audit_pb2, audit_pb2_grpc

    request = audit_pb2.QueryUsageRequest(
        key_id=args.key,
        model=args.model,
        group_by=audit_pb2.UsageGrouping.Value(f"USAGE_GROUPING_{args.by.upper()}"),
    )
    now = time.time()
    for flag, field in (("--since", request.since), ("--until", request.until)):
        text = getattr(args, flag.removeprefix("--"))
        if text:
            seconds = moment(text, flag, now)
            field.CopyFrom(Timestamp(seconds=int(seconds), nanos=int(seconds % 1 * 1e9)))
    metadata = (("x-api-key", args.admin_key),) if args.admin_key else ()
    with channel_for(args) as channel, remote_errors():
        reply = audit_pb2_grpc.AuditServiceStub(channel).QueryUsage(
            request, metadata=metadata, timeout=30
        )
    if args.json:
        document = json_format.MessageToDict(
            reply, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        print(json.dumps(document, indent=2, ensure_ascii=False), flush=True)
        return 0
    print(table(args.by, reply.groups, reply.total))
    if reply.more:
        print("(more groups than shown; narrow the filters)", file=sys.stderr)
    return 0


def table(by: str, groups: Any, total: Any) -> str:
    """The groups and the total as aligned columns under a header."""
    lines: list[tuple[str, ...]] = [(by, *COLUMNS)]
    lines += [cells(g.group or "-", g) for g in groups]
    lines.append(cells("total", total))
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join(
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in lines
    )


def cells(label: str, group: Any) -> tuple[str, ...]:
    return (
        label,
        str(group.requests),
        str(group.errors),
        str(group.tokens_in),
        str(group.tokens_out),
        f"{group.cost_usd:.6f}",
        f"{group.latency_p50_ms:.1f}",
        f"{group.latency_p95_ms:.1f}",
        f"{group.mean_ttft_ms:.1f}",
        str(group.attempts),
    )
