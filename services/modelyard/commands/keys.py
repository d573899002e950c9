"""`modelyard keys create|list|rotate|revoke`: gateway API keys, through the KeyService.

Every one needs an ADMIN key: ``--api-key``, else $MODELYARD_API_KEY, else
$MODELYARD_ADMIN_KEY (the bootstrap key). `create` and `rotate` print the new
secret once, on its own line; nothing else ever shows it again.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from typing import Any

from modelyard.commands.client_options import add_address, add_json, print_json
from modelyard.config.durations import parse_duration
from modelyard.security.principal import SCOPES

ADMIN_KEY_ENV = "MODELYARD_ADMIN_KEY"  # modelyard.security.auth_mode's bootstrap key


def register(sub: Any) -> None:
    """Add ``keys`` and its subcommands to the CLI's subparsers."""
    keys = sub.add_parser("keys", help="create, list, rotate and revoke gateway API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)

    create = keys_sub.add_parser("create", help="a new key; its secret is printed once")
    _common(create)
    create.add_argument("--owner", required=True, help="who the key is for")
    create.add_argument("--team", default="", help="the owner's team (team budgets)")
    create.add_argument(
        "--scope",
        action="append",
        choices=SCOPES,
        help="what it may do (repeatable; default: generate)",
    )
    create.add_argument(
        "--model",
        action="append",
        default=[],
        help="a catalog id or alias it may use (repeatable; default: every model)",
    )
    create.add_argument("--expires-in", help="e.g. 30d, 12h; default: never")
    create.add_argument("--rpm", type=float, default=0.0, help="its own requests per minute")
    create.add_argument("--tpm", type=float, default=0.0, help="its own tokens per minute")
    create.add_argument("--daily-usd", type=float, default=0.0, help="its own budget per day")
    create.add_argument("--monthly-usd", type=float, default=0.0, help="its own budget per month")
    create.set_defaults(run=run_create)

    listing = keys_sub.add_parser("list", help="every key (never a secret)")
    _common(listing)
    add_json(listing)
    listing.add_argument("--all", action="store_true", help="revoked keys too")
    listing.set_defaults(run=run_list)

    rotate = keys_sub.add_parser("rotate", help="a new secret; the old one works for --grace")
    _common(rotate)
    rotate.add_argument("key_id")
    rotate.add_argument("--grace", default="0s", help="how long the old secret still works")
    rotate.set_defaults(run=run_rotate)

    revoke = keys_sub.add_parser("revoke", help="stop a key now, on every gateway")
    _common(revoke)
    revoke.add_argument("key_id")
    revoke.set_defaults(run=run_revoke)


def _common(parser: argparse.ArgumentParser) -> None:
    # The CLI adds --api-key (and the TLS flags) to every command with --address.
    add_address(parser)


def _call(args: argparse.Namespace, method: str, request: Any) -> Any:
    """`method` of the KeyService with the admin key; a refusal raised as its error class."""
    from modelyard.security.client_channel import channel_for
    from modelyard_client.errors import remote_errors
    from modelyard_client.v1 import keys_pb2_grpc

    if not getattr(args, "api_key", None):  # the bootstrap key, for the first keys
        args.api_key = os.environ.get(ADMIN_KEY_ENV)
    with channel_for(args) as channel, remote_errors():
        stub = keys_pb2_grpc.KeyServiceStub(channel)
        return getattr(stub, method)(request, timeout=30)


def _seconds(text: str | None, flag: str) -> float:
    if not text:
        return 0.0
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise SystemExit(f"modelyard keys: {flag}: {exc}") from None


def run_create(args: argparse.Namespace) -> int:
    from modelyard_client.v1 import keys_pb2

    request = keys_pb2.CreateKeyRequest(
        owner=args.owner,
        team=args.team,
        scopes=args.scope or [],
        models=args.model,
        expires_in_s=_seconds(args.expires_in, "--expires-in"),
        requests_per_minute=args.rpm,
        tokens_per_minute=args.tpm,
        daily_budget_usd=args.daily_usd,
        monthly_budget_usd=args.monthly_usd,
    )
    issued = _call(args, "CreateKey", request)
    _print_key(issued.key)
    print(f"secret (shown once): {issued.secret}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    from modelyard_client.v1 import keys_pb2

    answer = _call(args, "ListKeys", keys_pb2.ListKeysRequest(include_revoked=args.all))
    if args.json:
        print_json(answer.keys)
        return 0
    for key in answer.keys:
        _print_key(key)
    return 0


def run_rotate(args: argparse.Namespace) -> int:
    from modelyard_client.v1 import keys_pb2

    grace = _seconds(args.grace, "--grace")
    issued = _call(args, "RotateKey", keys_pb2.RotateKeyRequest(id=args.key_id, grace_s=grace))
    _print_key(issued.key)
    print(f"secret (shown once): {issued.secret}")
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    from modelyard_client.v1 import keys_pb2

    _print_key(_call(args, "RevokeKey", keys_pb2.RevokeKeyRequest(id=args.key_id)))
    return 0


def _print_key(key: Any) -> None:
    """One line per key: id, owner, team, scopes, models, expiry and state."""
    state = "revoked " + _when(key.revoked_at) if key.HasField("revoked_at") else "active"
    expires = _when(key.expires_at) if key.HasField("expires_at") else "never"
    models = ",".join(key.models) or "*"
    fields = [
        key.id,
        f"owner={key.owner}",
        f"team={key.team or '-'}",
        f"scopes={','.join(key.scopes)}",
        f"models={models}",
        f"expires={expires}",
        state,
    ]
    print("\t".join(fields), file=sys.stdout)


def _when(stamp: Any) -> str:
    moment = datetime.fromtimestamp(stamp.ToNanoseconds() / 1e9, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
