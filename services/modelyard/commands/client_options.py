"""What every client command shares: ``--address``, ``--json`` on the listings, how a
server's error is printed and when a refusal exits REFUSED.

Every command that calls a server takes ``--address`` (default $MODELYARD_ADDRESS, else
the built-in address); the CLI then gives it ``--api-key`` and the TLS flags
(`modelyard.security.client_channel.add_client_tls_flags`). A listing's ``--json`` prints
one JSON document, a list of objects with the proto's field names (every field, zero
values too), in place of its table or lines.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable

from google.protobuf import json_format
from google.protobuf.message import Message

from modelyard.assembly.settings import DEFAULT_ADDRESS
from modelyard_client.errors import ModelyardError

ADDRESS_ENV = "MODELYARD_ADDRESS"
# Exit status of a call the server refused as a mistake in the request (`swap`,
# `abtest start`), whose codes are these; any other error (the server unreachable, ...)
# is reported as every command reports it, exit 1.
REFUSED = 2
REFUSAL_CODES = frozenset(
    {"INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION", "ALREADY_EXISTS"}
)


def add_address(parser: argparse.ArgumentParser) -> None:
    """``--address HOST:PORT`` of the server the command calls."""
    parser.add_argument(
        "--address",
        default=os.environ.get(ADDRESS_ENV, DEFAULT_ADDRESS),
        help=f"host:port of the server (env {ADDRESS_ENV}; default {DEFAULT_ADDRESS})",
    )


def add_json(parser: argparse.ArgumentParser) -> None:
    """``--json``: the listing as one JSON document."""
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document, a list of objects with the proto's field names",
    )


def json_document(messages: Iterable[Message]) -> str:
    """`messages` as a JSON list of objects: proto field names, every field present."""
    return json.dumps(
        [
            json_format.MessageToDict(
                message,
                preserving_proto_field_name=True,
                always_print_fields_with_no_presence=True,
            )
            for message in messages
        ],
        indent=2,
        ensure_ascii=False,
    )


def print_json(messages: Iterable[Message]) -> None:
    print(json_document(messages), flush=True)


def non_negative(text: str) -> int:
    """An argparse type: a whole number a uint32 field holds."""
    value = int(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and {2**32 - 1}")
    return value


def print_error(exc: ModelyardError) -> None:
    """How every client command reports a server's error: its message and its code."""
    print(f"modelyard: {exc.message} [{exc.code.name}]", file=sys.stderr)
