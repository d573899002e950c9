"""TLS and mTLS credentials from PEM files: for servers, for internal calls, for clients.

One reader (`read_pem`) for every file, so a missing, unreadable or non-PEM
file is refused the same way wherever it is named: a `ConfigError` whose
problem names where it was given (``security.tls.cert``, ``--tls-ca``) and the
path, raised before a server starts or a channel opens. gRPC's own answer to
a bad file is a crash deep in its core, or a handshake that fails on the
first call with no word about which file.

Under ``mtls`` a server requires a client certificate signed by `ca`
(``require_client_auth``); a plaintext client, one without a certificate and
one whose certificate another CA signed are all refused during the handshake,
before any modelyard code sees the call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from modelyard.config.security import TlsConfig
from modelyard.errors import ConfigError, ConfigProblem

SECTION = "model_system.security.tls"  # as the loader names keys
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


def _certificate(path: Path, where: str) -> bytes:
    return read_pem(path, where, labels=CERTIFICATE_LABELS)


def _key(path: Path, where: str) -> bytes:
    return read_pem(path, where, labels=KEY_LABELS)


def server_credentials(tls: TlsConfig) -> grpc.ServerCredentials | None:
    """What a server of this configuration listens with; None: plaintext (mode ``plaintext``).

    Under ``mtls`` clients must present a certificate `ca` signed.
    """
    if tls.mode == "plaintext":
        return None
    assert tls.cert is not None and tls.key is not None  # TlsConfig.violations
    pair = (_key(tls.key, f"{SECTION}.key"), _certificate(tls.cert, f"{SECTION}.cert"))
    if tls.mode == "tls":
        return grpc.ssl_server_credentials([pair])
    assert tls.ca is not None
    return grpc.ssl_server_credentials(
        [pair], root_certificates=_certificate(tls.ca, f"{SECTION}.ca"), require_client_auth=True
    )


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
            root_certificates=_certificate(self.ca, ca_name) if self.ca else None,
            private_key=_key(self.key, key_name) if self.key else None,
            certificate_chain=_certificate(self.cert, cert_name) if self.cert else None,
        )

    @property
    def given(self) -> bool:
        """Any file given: the client talks TLS."""
        return any(p is not None for p in (self.ca, self.cert, self.key))


def internal_client_files(tls: TlsConfig) -> ClientFiles | None:
    """The files this process's calls to the other services use; None: plaintext (``plaintext``).

    Under ``mtls`` they present `client_cert` (else `cert`), which the other
    services' `ca` must have signed; under ``tls`` no certificate.
    """
    if tls.mode == "plaintext":
        return None
    if tls.mode == "tls":
        return ClientFiles(ca=tls.ca, names=(f"{SECTION}.ca", "", ""))
    if tls.client_cert is not None:
        return ClientFiles(
            ca=tls.ca,
            cert=tls.client_cert,
            key=tls.client_key,
            names=(f"{SECTION}.ca", f"{SECTION}.client_cert", f"{SECTION}.client_key"),
        )
    return ClientFiles(
        ca=tls.ca,
        cert=tls.cert,
        key=tls.key,
        names=(f"{SECTION}.ca", f"{SECTION}.cert", f"{SECTION}.key"),
    )


def peer_common_name(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    """The common name of the certificate the caller presented, which the server's `ca`
    verified in the handshake (mode ``mtls``); None over plaintext or plain TLS.

    The dev set's service certificate says `dev_certs.SERVICE_NAME`, its client
    certificate `dev_certs.CLIENT_NAME`: a service identity for the callers that
    are modelyard's own services.
    """
    for name in context.auth_context().get("x509_common_name", ()):
        return name.decode()
    return None
