"""`modelyard certs dev [DIR]`: a local CA and certificates for mTLS between the services.

Prints the configuration lines that use them, for the servers (``security.tls``)
and for the client commands (``--tls-ca``/``--tls-cert``/``--tls-key`` or their variables).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from modelyard.assembly.settings import default_data_dir
from modelyard.security.client_channel import CA_ENV, CERT_ENV, KEY_ENV


def register(sub: Any) -> None:
    """Add ``certs`` and its ``dev`` subcommand to the CLI's subparsers."""
    certs = sub.add_parser("certs", help="make certificates for mTLS between the services")
    certs_sub = certs.add_subparsers(dest="certs_command", required=True)
    dev = certs_sub.add_parser(
        "dev",
        help="a new local CA, a service and a client certificate, for development "
        "(the embedded and compose deployments)",
    )
    dev.add_argument(
        "directory",
        nargs="?",
        type=Path,
        help="where to write them (default: DATA_DIR/certs, DATA_DIR from MODELYARD_DATA_DIR)",
    )
    dev.add_argument(
        "--name",
        action="append",
        default=[],
        metavar="HOST",
        help="one more DNS name or IP address the service certificate holds (repeatable); "
        "it always holds localhost, 127.0.0.1, ::1 and the compose service names",
    )
    dev.add_argument("--force", action="store_true", help="replace a set already there")
    dev.add_argument(
        "--keep",
        action="store_true",
        help="keep a whole set already there and exit 0 (docker-compose.yml's first step)",
    )
    dev.set_defaults(run=run_dev)


def run_dev(args: argparse.Namespace) -> int:
    """Write the set; print where, and the lines that use it: comments and YAML, then
    shell, each part pasted where it goes as printed."""
    from modelyard.security.dev_certs import dev_certs_in, write_dev_certs  # cryptography

    directory = (args.directory or default_data_dir(os.environ) / "certs").expanduser().resolve()
    certs = dev_certs_in(directory)
    if args.keep and all(p.exists() for p in certs.files()):
        print(f"# modelyard: kept the certificates in {directory}")
    else:
        certs = write_dev_certs(directory, extra_names=args.name, overwrite=args.force)
        print(f"# modelyard: wrote a new CA and certificates in {directory}")
    print("# the servers' configuration (modelyard up / serve --config FILE):")
    for line in (
        "model_system:",
        "  security:",
        "    tls:",
        "      mode: mtls",
        f"      cert: {certs.server_cert}",
        f"      key: {certs.server_key}",
        f"      ca: {certs.ca}",
    ):
        print(line)
    print("# the client commands (modelyard generate, models, ...) and modelyard_client:")
    print(f"export {CA_ENV}={certs.ca}")
    print(f"export {CERT_ENV}={certs.client_cert}")
    print(f"export {KEY_ENV}={certs.client_key}")
    return 0
