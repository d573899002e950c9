"""The `modelyard` command's client flags: plaintext, TLS, or mTLS with its certificate.

The channel itself is the client package's (`modelyard_client.channel.blocking_channel`);
the CLI gives every command that takes ``--address`` the ``--tls-ca``, ``--tls-cert``
and ``--tls-key`` flags (`add_client_tls_flags`), each defaulting to its environment variable,
so a shell that exported the lines `modelyard certs dev` printed needs no
flags.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from modelyard_client.channel import CHANNEL_OPTIONS, blocking_channel
from modelyard_client.tls_files import ClientFiles

CA_ENV = "MODELYARD_TLS_CA"
CERT_ENV = "MODELYARD_TLS_CERT"
KEY_ENV = "MODELYARD_TLS_KEY"
API_KEY_ENV = "MODELYARD_API_KEY"


def add_client_tls_flags(parser: argparse.ArgumentParser) -> None:
    """Give `parser` and every subcommand below it that takes ``--address`` the TLS flags."""
    for action in parser._actions:  # argparse keeps its subparsers only here
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                add_client_tls_flags(sub)
    if "--address" not in parser._option_string_actions:
        return
    env = os.environ
    if "--api-key" not in parser._option_string_actions:  # a command may define its own
        parser.add_argument(
            "--api-key",
            default=env.get(API_KEY_ENV),
            help=f"the gateway API key to present, when the server requires keys "
            f"(env {API_KEY_ENV})",
        )
    parser.add_argument(
        "--tls-ca",
        type=Path,
        default=_path(env.get(CA_ENV)),
        help=f"PEM CA that signed the server's certificate: talk TLS (env {CA_ENV})",
    )
    parser.add_argument(
        "--tls-cert",
        type=Path,
        default=_path(env.get(CERT_ENV)),
        help=f"PEM client certificate for an mTLS server, with --tls-key (env {CERT_ENV})",
    )
    parser.add_argument(
        "--tls-key",
        type=Path,
        default=_path(env.get(KEY_ENV)),
        help=f"PEM private key of --tls-cert (env {KEY_ENV})",
    )


def _path(text: str | None) -> Path | None:
    return Path(text).expanduser() if text else None


def files_from_args(args: argparse.Namespace) -> ClientFiles:
    """The TLS files a client command was given (flags, else their variables)."""
    return ClientFiles(
        ca=getattr(args, "tls_ca", None),
        cert=getattr(args, "tls_cert", None),
        key=getattr(args, "tls_key", None),
    )


def channel_for(
    args: argparse.Namespace, options: Sequence[tuple[str, Any]] = CHANNEL_OPTIONS
) -> grpc.Channel:
    """The channel of a client command: to ``--address``, with its TLS flags and key."""
    api_key = getattr(args, "api_key", None)
    return blocking_channel(args.address, files_from_args(args), options, api_key)
