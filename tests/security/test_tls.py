"""TLS and mTLS servers refuse what they must, during the handshake, and take what they should.

Real servers on port 0 with certificates `write_dev_certs` made; the other
side is a real gRPC client: plaintext, TLS without a client certificate, a
client certificate another CA signed, the right one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelyard.config import parse_config
from modelyard.config.security import TlsConfig
from modelyard.security.channels import InternalChannels
from modelyard.security.dev_certs import (
    CLIENT_NAME,
    SERVICE_NAME,
    DevCerts,
    certificate_pem,
    issue,
    key_pem,
    make_ca,
    write_dev_certs,
)
from modelyard.security.tls import peer_common_name, server_credentials
from modelyard.server.runtime import RunningServer, ServiceBinding, start_server
from modelyard_client.errors import ConfigError
from modelyard_client.tls_files import ClientFiles

SERVING = health_pb2.HealthCheckResponse.SERVING


@pytest.fixture
def certs(tmp_path: Path) -> DevCerts:
    return write_dev_certs(tmp_path / "certs")


@dataclass(frozen=True)
class Foreign:
    """A client certificate and key another CA signed, and that CA."""

    ca: Path
    cert: Path
    key: Path


@pytest.fixture
def foreign(tmp_path: Path) -> Foreign:
    ca = make_ca("another CA")
    cert, key = issue(ca, CLIENT_NAME, [], server=False)
    out = Foreign(tmp_path / "other-ca.pem", tmp_path / "other.pem", tmp_path / "other-key.pem")
    out.ca.write_bytes(certificate_pem(ca[0]))
    out.cert.write_bytes(certificate_pem(cert))
    out.key.write_bytes(key_pem(key))
    return out


def _tls(certs: DevCerts, mode: str) -> TlsConfig:
    return TlsConfig(mode=mode, cert=certs.server_cert, key=certs.server_key, ca=certs.ca)  # type: ignore[arg-type]  # mode: a TlsMode


async def _serve(tls: TlsConfig) -> AsyncIterator[RunningServer]:
    server = await start_server([], "127.0.0.1:0", credentials=server_credentials(tls))
    try:
        yield server
    finally:
        await server.server.stop(0)


@pytest.fixture
async def mtls_server(certs: DevCerts) -> AsyncIterator[RunningServer]:
    async for server in _serve(_tls(certs, "mtls")):
        yield server


@pytest.fixture
async def tls_server(certs: DevCerts) -> AsyncIterator[RunningServer]:
    async for server in _serve(_tls(certs, "tls")):
        yield server


async def _check(channel: grpc.aio.Channel) -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(), timeout=5
    )
    return int(reply.status)


def _secure(port: int, files: ClientFiles) -> grpc.aio.Channel:
    return grpc.aio.secure_channel(f"127.0.0.1:{port}", files.credentials())


async def _refused(channel: grpc.aio.Channel) -> grpc.StatusCode:
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _check(channel)
    return refused.value.code()


async def test_an_mtls_server_answers_a_client_with_a_certificate_its_ca_signed(
    mtls_server: RunningServer, certs: DevCerts
) -> None:
    files = ClientFiles(ca=certs.ca, cert=certs.client_cert, key=certs.client_key)
    async with _secure(mtls_server.port, files) as channel:
        assert await _check(channel) == SERVING


async def test_an_mtls_server_refuses_a_plaintext_client(mtls_server: RunningServer) -> None:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{mtls_server.port}")
    assert await _refused(channel) == grpc.StatusCode.UNAVAILABLE


async def test_an_mtls_server_refuses_a_client_without_a_certificate(
    mtls_server: RunningServer, certs: DevCerts
) -> None:
    channel = _secure(mtls_server.port, ClientFiles(ca=certs.ca))
    assert await _refused(channel) == grpc.StatusCode.UNAVAILABLE


async def test_an_mtls_server_refuses_a_client_certificate_another_ca_signed(
    mtls_server: RunningServer, certs: DevCerts, foreign: Foreign
) -> None:
    channel = _secure(
        mtls_server.port, ClientFiles(ca=certs.ca, cert=foreign.cert, key=foreign.key)
    )
    assert await _refused(channel) == grpc.StatusCode.UNAVAILABLE
    # Still serving the right client afterwards.
    good = ClientFiles(ca=certs.ca, cert=certs.client_cert, key=certs.client_key)
    async with _secure(mtls_server.port, good) as channel:
        assert await _check(channel) == SERVING


async def test_a_client_refuses_a_server_whose_certificate_its_ca_did_not_sign(
    mtls_server: RunningServer, certs: DevCerts, foreign: Foreign
) -> None:
    files = ClientFiles(ca=foreign.ca, cert=certs.client_cert, key=certs.client_key)
    assert await _refused(_secure(mtls_server.port, files)) == grpc.StatusCode.UNAVAILABLE


async def test_a_tls_server_takes_a_client_without_a_certificate_and_refuses_plaintext(
    tls_server: RunningServer, certs: DevCerts
) -> None:
    async with _secure(tls_server.port, ClientFiles(ca=certs.ca)) as channel:
        assert await _check(channel) == SERVING
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{tls_server.port}")
    assert await _refused(channel) == grpc.StatusCode.UNAVAILABLE


async def test_internal_channels_under_mtls_present_the_service_certificate(
    mtls_server: RunningServer, certs: DevCerts
) -> None:
    channels = InternalChannels.from_config(_tls(certs, "mtls"))
    async with channels.open(f"127.0.0.1:{mtls_server.port}") as channel:
        assert await _check(channel) == SERVING


async def test_internal_channels_under_tls_present_no_certificate_an_mtls_server_takes(
    mtls_server: RunningServer, certs: DevCerts
) -> None:
    channels = InternalChannels.from_config(_tls(certs, "tls"))
    assert await _refused(channels.open(f"127.0.0.1:{mtls_server.port}")) == (
        grpc.StatusCode.UNAVAILABLE
    )


async def test_internal_channels_present_client_cert_when_given(
    mtls_server: RunningServer, certs: DevCerts, foreign: Foreign
) -> None:
    tls = TlsConfig(
        mode="mtls",
        cert=certs.server_cert,
        key=certs.server_key,
        ca=certs.ca,
        client_cert=foreign.cert,
        client_key=foreign.key,
    )
    # The foreign certificate, not `cert`, goes out: the server refuses it.
    channels = InternalChannels.from_config(tls)
    assert await _refused(channels.open(f"127.0.0.1:{mtls_server.port}")) == (
        grpc.StatusCode.UNAVAILABLE
    )


# ---- the files, refused before anything starts ------------------------------


def _problem(exc: pytest.ExceptionInfo[ConfigError]) -> tuple[str, str]:
    (problem,) = exc.value.problems
    return problem.path, problem.message


def test_a_missing_file_is_named_with_its_key(certs: DevCerts, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pem"
    tls = TlsConfig(mode="mtls", cert=missing, key=certs.server_key, ca=certs.ca)
    with pytest.raises(ConfigError) as refused:
        server_credentials(tls)
    assert _problem(refused) == ("model_system.security.tls.cert", f"{missing}: no such file")


def test_a_file_that_is_not_pem_is_named(certs: DevCerts, tmp_path: Path) -> None:
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate\n")
    tls = TlsConfig(mode="mtls", cert=certs.server_cert, key=certs.server_key, ca=garbage)
    with pytest.raises(ConfigError) as refused:
        server_credentials(tls)
    assert _problem(refused) == (
        "model_system.security.tls.ca",
        f"{garbage}: is not PEM (no '-----BEGIN CERTIFICATE-----' block)",
    )


def test_a_key_given_as_the_certificate_is_named(certs: DevCerts) -> None:
    tls = TlsConfig(mode="tls", cert=certs.server_key, key=certs.server_key)
    with pytest.raises(ConfigError) as refused:
        server_credentials(tls)
    assert _problem(refused) == (
        "model_system.security.tls.cert",
        f"{certs.server_key}: holds a PRIVATE KEY, not a CERTIFICATE",
    )


def test_an_unreadable_path_is_named(certs: DevCerts, tmp_path: Path) -> None:
    tls = TlsConfig(mode="tls", cert=certs.server_cert, key=tmp_path)
    with pytest.raises(ConfigError) as refused:
        InternalChannels.from_config(TlsConfig(mode="plaintext"))  # plaintext reads nothing
        server_credentials(tls)
    assert _problem(refused) == (
        "model_system.security.tls.key",
        f"{tmp_path}: is a directory, not a PEM file",
    )


def test_a_client_flag_file_is_named_with_its_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        ClientFiles(ca=tmp_path / "ca.pem").credentials()
    assert _problem(refused) == ("--tls-ca", f"{tmp_path / 'ca.pem'}: no such file")


def test_a_client_certificate_without_its_key_is_refused(certs: DevCerts) -> None:
    with pytest.raises(ConfigError) as refused:
        ClientFiles(ca=certs.ca, cert=certs.client_cert).credentials()
    assert _problem(refused) == ("--tls-key", "is required with --tls-cert and --tls-key")


def test_plaintext_is_the_default_and_reads_no_file() -> None:
    config = parse_config("model_system: {}")
    assert config.security.tls.mode == "plaintext"
    assert server_credentials(config.security.tls) is None
    assert InternalChannels.from_config(config.security.tls).credentials is None


@pytest.mark.parametrize(
    ("tls", "problem"),
    [
        ("{mode: tls}", "model_system.security.tls.cert: is required with mode tls"),
        (
            "{mode: mtls, cert: a.pem, key: b.pem}",
            "model_system.security.tls.ca: is required with mode mtls "
            "(it verifies the clients' certificates)",
        ),
        (
            "{mode: mtls, cert: a.pem, key: b.pem, ca: c.pem, client_cert: d.pem}",
            "model_system.security.tls.client_cert: and client_key go together: "
            "give both or neither",
        ),
        # YAML reads a bare off/on as a boolean: the mode's names are none of those.
        (
            "{mode: off}",
            "model_system.security.tls.mode: 'False' is not one of plaintext, tls, mtls",
        ),
    ],
)
def test_the_config_states_what_a_mode_needs(tls: str, problem: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(f"model_system:\n  security:\n    tls: {tls}\n")
    found = [str(p) for p in refused.value.problems]
    assert any(line.startswith(problem) for line in found), found


# ---- who called, as the handshake verified it --------------------------------

WHO = "/test.Who/Name"


async def _who_serves(tls: TlsConfig) -> RunningServer:
    async def name(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return (peer_common_name(context) or "-").encode()

    handler = grpc.method_handlers_generic_handler(
        "test.Who", {"Name": grpc.unary_unary_rpc_method_handler(name)}
    )

    def register(server: grpc.aio.Server) -> None:
        server.add_generic_rpc_handlers((handler,))

    return await start_server(
        [ServiceBinding("test.Who", register)],
        "127.0.0.1:0",
        credentials=server_credentials(tls),
    )


async def _who(channel: grpc.aio.Channel) -> str:
    async with channel:
        call = channel.unary_unary(WHO, request_serializer=None, response_deserializer=None)
        answer: bytes = await call(b"", timeout=5)
    return answer.decode()


async def test_the_peers_common_name_is_the_certificate_it_presented(certs: DevCerts) -> None:
    server = await _who_serves(_tls(certs, "mtls"))
    try:
        address = f"127.0.0.1:{server.port}"
        service = InternalChannels.from_config(_tls(certs, "mtls"))
        assert await _who(service.open(address)) == SERVICE_NAME
        client = ClientFiles(ca=certs.ca, cert=certs.client_cert, key=certs.client_key)
        assert await _who(_secure(server.port, client)) == CLIENT_NAME
    finally:
        await server.server.stop(0)


async def test_no_common_name_without_a_client_certificate(certs: DevCerts) -> None:
    server = await _who_serves(_tls(certs, "tls"))
    try:
        assert await _who(_secure(server.port, ClientFiles(ca=certs.ca))) == "-"
    finally:
        await server.server.stop(0)
