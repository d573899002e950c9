"""A local CA and the certificates the embedded and compose deployments need, for development.

`modelyard certs dev` writes them: ``ca.pem`` (the CA every side trusts),
``server.pem`` + ``server-key.pem`` (what every modelyard service presents,
as a server and, for its calls to the other services, as a client: both
extended key usages) and ``client.pem`` + ``client-key.pem`` (for the CLI
and `modelyard_client`). The service certificate names ``localhost``,
``127.0.0.1``, ``::1`` and every compose service, so one set serves both
deployments. The CA's private key is not kept: nobody can mint another
certificate this CA signs, and a new set means a new CA.

Keys are EC P-256 (fast to make and to handshake) and written 0600.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from modelyard_client.errors import InvalidRequest

# The names the services reach each other by in docker-compose.yml.
COMPOSE_SERVICES = (
    "registry",
    "selector",
    "hotswap",
    "gateway",
    "backend-local",
    "backend-openai-compat",
    "backend-coreml",
    "backend-plugins",
)
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
SERVICE_NAME = "modelyard-service"  # the service certificate's common name
CLIENT_NAME = "modelyard-client"
VALID_DAYS = 825  # the longest a leaf certificate may live for clients that check
CA_VALID_DAYS = 3650

Key = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class DevCerts:
    """Where `write_dev_certs` put each file."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def files(self) -> tuple[Path, ...]:
        return (self.ca, self.server_cert, self.server_key, self.client_cert, self.client_key)


def dev_certs_in(directory: Path) -> DevCerts:
    """The file names of a set in `directory`."""
    return DevCerts(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server-key.pem",
        client_cert=directory / "client.pem",
        client_key=directory / "client-key.pem",
    )


def new_key() -> Key:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "modelyard development"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _now() -> datetime.datetime:
    # A minute back: a peer whose clock is a little behind still takes it.
    return datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)


def make_ca(common_name: str = "modelyard development CA") -> tuple[x509.Certificate, Key]:
    """A self-signed CA certificate (path length 0: it signs leaves only) and its key."""
    key = new_key()
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=CA_VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def issue(
    ca: tuple[x509.Certificate, Key],
    common_name: str,
    names: Sequence[str],
    *,
    server: bool,
) -> tuple[x509.Certificate, Key]:
    """A leaf certificate `ca` signs for `names` (DNS names or IP addresses) and its key.

    `server`: usable as a server's certificate and a client's (a service is
    both); else a client's only.
    """
    ca_cert, ca_key = ca
    key = new_key()
    now = _now()
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if server:
        usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_san(n) for n in names]), critical=False
        )
    return builder.sign(ca_key, hashes.SHA256()), key


def certificate_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: Key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_file(path: Path, data: bytes, mode: int) -> None:
    """Write `data` to `path` with permissions `mode` from the first byte (no window in
    which a key is readable by others)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # an existing file keeps its old mode through O_CREAT
        os.write(fd, data)
    finally:
        os.close(fd)


def service_names(extra: Sequence[str] = ()) -> list[str]:
    """The names the service certificate holds: local ones, the compose services, `extra`."""
    return list(dict.fromkeys([*LOCAL_NAMES, *COMPOSE_SERVICES, *extra]))


def write_dev_certs(
    directory: Path, *, extra_names: Sequence[str] = (), overwrite: bool = False
) -> DevCerts:
    """Make a new CA and its service and client certificates in `directory`.

    Refuses (`InvalidRequest`, naming them) to replace files already there
    unless `overwrite`: a set in use would stop matching its peers' CA.
    """
    certs = dev_certs_in(directory)
    present = [str(p) for p in certs.files() if p.exists()]
    if present and not overwrite:
        raise InvalidRequest(
            f"{', '.join(present)} already exist; pass --force to replace the whole set"
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidRequest(f"cannot create {directory}: {exc.strerror or exc}") from None
    ca = make_ca()
    server = issue(ca, SERVICE_NAME, service_names(extra_names), server=True)
    client = issue(ca, CLIENT_NAME, [], server=False)
    try:
        write_file(certs.ca, certificate_pem(ca[0]), 0o644)
        write_file(certs.server_cert, certificate_pem(server[0]), 0o644)
        write_file(certs.server_key, key_pem(server[1]), 0o600)
        write_file(certs.client_cert, certificate_pem(client[0]), 0o644)
        write_file(certs.client_key, key_pem(client[1]), 0o600)
    except OSError as exc:
        raise InvalidRequest(f"cannot write in {directory}: {exc.strerror or exc}") from None
    return certs
