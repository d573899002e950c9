"""TLS and mTLS credentials from PEM files: for servers and for internal calls.

Every file is read by the client package's one reader (`modelyard_client.tls_files`,
which also holds a client's `ClientFiles`), so a missing, unreadable or non-PEM file
is refused the same way wherever it is named: a `ConfigError` naming where it was
given (``security.tls.cert``, ``--tls-ca``) and the path, before a server starts or
a channel opens.

Under ``mtls`` a server requires a client certificate signed by `ca`
(``require_client_auth``); a plaintext client, one without a certificate and
one whose certificate another CA signed are all refused during the handshake,
before any modelyard code sees the call.
"""

from __future__ import annotations

from typing import Any

import grpc

from modelyard.config.security import TlsConfig
from modelyard_client.tls_files import ClientFiles, read_certificate, read_key

SECTION = "model_system.security.tls"  # as the loader names keys


def server_credentials(tls: TlsConfig) -> grpc.ServerCredentials | None:
    """What a server of this configuration listens with; None: plaintext (mode ``plaintext``).

    Under ``mtls`` clients must present a certificate `ca` signed.
    """
    if tls.mode == "plaintext":
        return None
    assert tls.cert is not None and tls.key is not None  # TlsConfig.violations
    pair = (read_key(tls.key, f"{SECTION}.key"), read_certificate(tls.cert, f"{SECTION}.cert"))
    if tls.mode == "tls":
        return grpc.ssl_server_credentials([pair])
    assert tls.ca is not None
    return grpc.ssl_server_credentials(
        [pair],
        root_certificates=read_certificate(tls.ca, f"{SECTION}.ca"),
        require_client_auth=True,
    )


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
