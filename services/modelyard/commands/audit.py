"""`modelyard audit`: the audit log of a running server, newest first (AuditService).

Needs an ADMIN key when the server requires keys: ``--api-key``, else
$MODELYARD_API_KEY, else $MODELYARD_ADMIN_KEY. One line per call: when, who,
the RPC, the models asked for and served, tokens, cost, outcome and latency.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from typing import Any

from modelyard.commands.client_options import add_address, add_json, print_json
from modelyard.config.durations import parse_duration

ADMIN_KEY_ENV = "MODELYARD_ADMIN_KEY"


def register(sub: Any) -> None:
    """Add ``audit`` to the CLI's subparsers."""
    audit = sub.add_parser("audit", help="who called what, when, at what cost (newest first)")
    add_address(audit)
    add_json(audit)
    audit.add_argument(
        "--api-key",
        dest="admin_key",
        default=os.environ.get("MODELYARD_API_KEY") or os.environ.get(ADMIN_KEY_ENV),
        help=f"an ADMIN key (default: $MODELYARD_API_KEY, else ${ADMIN_KEY_ENV})",
    )
    audit.add_argument("--key", default="", help="only this key id ('open': no keys)")
    audit.add_argument("--since", help="only calls this recent, e.g. 15m, 1h, 7d")
    audit.add_argument("--rpc", default="", help="only this RPC, e.g. Generate or RegisterModel")
    audit.add_argument("--model", default="", help="only calls that asked for or got this model")
    audit.add_argument(
        "--outcome", default="", help="only this status code or reason, e.g. OK, NOT_FOUND"
    )
    audit.add_argument("--limit", type=int, default=50, help="at most this many lines (50)")
    audit.set_defaults(run=run_audit)


def run_audit(args: argparse.Namespace) -> int:
    from google.protobuf.timestamp_pb2 import Timestamp

    from modelyard.security.client_channel import channel_for
    from modelyard_client.errors import remote_errors
    from modelyard_client.v1 import audit_pb2, audit_pb2_grpc

    if args.limit < 1:
        raise SystemExit("modelyard audit: --limit must be at least 1")
    request = audit_pb2.QueryAuditRequest(
        key_id=args.key, rpc=args.rpc, model=args.model, outcome=args.outcome, limit=args.limit
    )
    if args.since:
        try:
            ago = parse_duration(args.since)
        except ValueError as exc:
            raise SystemExit(f"modelyard audit: --since: {exc}") from None
        request.since.CopyFrom(Timestamp(seconds=int(time.time() - ago)))
    metadata = (("x-api-key", args.admin_key),) if args.admin_key else ()
    with channel_for(args) as channel, remote_errors():
        reply = audit_pb2_grpc.AuditServiceStub(channel).QueryAudit(
            request, metadata=metadata, timeout=30
        )
    if args.json:
        print_json(reply.entries)
    else:
        for entry in reply.entries:
            print(line_of(entry))
    if reply.more and args.json:  # stdout stays one JSON document
        print(
            f"modelyard: more than {args.limit}; narrow the filters or raise --limit",
            file=sys.stderr,
        )
    elif reply.more:
        print(f"(more than {args.limit}; narrow the filters or raise --limit)")
    return 0


def line_of(entry: Any) -> str:
    """One entry as a line: tab-separated, every field in the same place."""
    at = datetime.fromtimestamp(entry.at.seconds + entry.at.nanos / 1e9, UTC)
    served = entry.model_served or "-"
    outcome = entry.code if not entry.reason else f"{entry.code}/{entry.reason}"
    return "\t".join(
        (
            at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            entry.key_id or "-",
            entry.rpc.rpartition(".")[2],  # GatewayService/Generate
            entry.model_requested or "-",
            served,
            f"in={entry.tokens_in}",
            f"out={entry.tokens_out}",
            f"${entry.cost_usd:.6f}",
            outcome,
            f"{entry.latency_ms:.1f}ms",
        )
    )
