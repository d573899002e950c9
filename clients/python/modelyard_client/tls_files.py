"""A client's TLS and mTLS files: PEM, read and checked before a channel opens.

One reader (`read_pem`) for every file, the server's too (`modelyard.security.tls`),
so a missing, unreadable or non-PEM file is refused the same way wherever it is named:
a `ConfigError` whose problem names where it was given (``security.tls.cert``,
``--tls-ca``, the client's ``ca=`` argument) and the path. gRPC's own answer to a bad
file is a crash deep in its core, or a handshake that fails on the first call with no
word about which file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import grpc

from modelyard_client.errors import ConfigError, ConfigProblem

# A PEM block: "-----BEGIN <label>-----". Which labels count for which file.
_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")
CERTIFICATE_LABELS = ("CERTIFICATE",)
KEY_LABELS = ("PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY")


def read_pem(path: Path, where: str, *, labels: tuple[str, ...]) -> bytes:
    """The bytes of the PEM file at `path`, given as `where`; its first block must be one
    of `labels`. Raises `ConfigError` naming `where` and the path otherwise."""

    def refuse(why: str) -> ConfigError:
        return ConfigError([ConfigProblem(where, f"{path}: {why}")])

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise refuse("no such file") from None
    except IsADirectoryError:
        raise refuse("is a directory, not a PEM file") from None
    except OSError as exc:
        raise refuse(f"cannot be read ({exc.strerror or exc})") from None
    found = _BEGIN.search(data)
    if found is None:
        raise refuse(f"is not PEM (no '-----BEGIN {labels[0]}-----' block)")
    label = found.group(1).decode()
    if label not in labels:
        raise refuse(f"holds a {label}, not a {' or '.join(labels)}")
    return data


def read_certificate(path: Path, where: str) -> bytes:
    return read_pem(path, where, labels=CERTIFICATE_LABELS)


def read_key(path: Path, where: str) -> bytes:
    return read_pem(path, where, labels=KEY_LABELS)


@dataclass(frozen=True)
class ClientFiles:
    """A client's PEM files and the names they were given under (a key path, a flag)."""

    ca: Path | None = None  # verifies the server; None: the system's roots
    cert: Path | None = None  # presented to an mtls server, with `key`
    key: Path | None = None
    names: tuple[str, str, str] = ("--tls-ca", "--tls-cert", "--tls-key")

    def credentials(self) -> grpc.ChannelCredentials:
        """TLS channel credentials from these files (read now, every one checked)."""
        ca_name, cert_name, key_name = self.names
        if (self.cert is None) != (self.key is None):
            missing = key_name if self.key is None else cert_name
            raise ConfigError(
                [ConfigProblem(missing, f"is required with {cert_name} and {key_name}")]
            )
        return grpc.ssl_channel_credentials(
            root_certificates=read_certificate(self.ca, ca_name) if self.ca else None,
            private_key=read_key(self.key, key_name) if self.key else None,
            certificate_chain=read_certificate(self.cert, cert_name) if self.cert else None,
        )

    @property
    def given(self) -> bool:
        """Any file given: the client talks TLS."""
        return any(p is not None for p in (self.ca, self.cert, self.key))
