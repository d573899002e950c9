"""`modelyard certs dev`: a CA and certificates every deployment's names hold, keys 0600,
and configuration lines that start an mTLS server as printed."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from modelyard.cli import main
from modelyard.config import parse_config
from modelyard.security.dev_certs import dev_certs_in
from modelyard.security.tls import server_credentials

ROOT = Path(__file__).resolve().parents[2]


def _names(cert: x509.Certificate) -> set[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return set(san.get_values_for_type(x509.DNSName)) | ips


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_it_writes_a_ca_and_certificates_it_signed_with_keys_only_the_owner_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["certs", "dev", str(tmp_path / "certs")]) == 0
    certs = dev_certs_in(tmp_path / "certs")
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in certs.files()}
    assert modes == {
        "ca.pem": 0o644,
        "server.pem": 0o644,
        "server-key.pem": 0o600,
        "client.pem": 0o644,
        "client-key.pem": 0o600,
    }
    assert sorted(p.name for p in (tmp_path / "certs").iterdir()) == sorted(modes)  # no CA key
    ca = _load(certs.ca)
    for leaf in (_load(certs.server_cert), _load(certs.client_cert)):
        leaf.verify_directly_issued_by(ca)
    usages = _load(certs.server_cert).extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert list(usages.value) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    client_usages = _load(certs.client_cert).extensions.get_extension_for_class(
        x509.ExtendedKeyUsage
    )
    assert list(client_usages.value) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_the_service_certificate_names_localhost_and_every_compose_service(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["certs", "dev", str(tmp_path), "--name", "gw.example.test"]) == 0
    names = _names(_load(dev_certs_in(tmp_path).server_cert))
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    modelyard_services = {
        name for name, service in compose["services"].items() if "serve" in service["command"]
    }
    assert {"localhost", "127.0.0.1", "::1", "gw.example.test"} | modelyard_services <= names
    assert all(ipaddress.ip_address(n) for n in names if n[0].isdigit() or ":" in n)


def test_the_printed_lines_configure_an_mtls_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["certs", "dev", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    yaml_part = out.partition("\nexport ")[0]
    config = parse_config(yaml_part)
    certs = dev_certs_in(tmp_path)
    tls = config.security.tls
    assert (tls.mode, tls.cert, tls.key, tls.ca) == (
        "mtls",
        certs.server_cert,
        certs.server_key,
        certs.ca,
    )
    assert server_credentials(tls) is not None
    exports = [line for line in out.splitlines() if line.startswith("export ")]
    assert exports == [
        f"export MODELYARD_TLS_CA={certs.ca}",
        f"export MODELYARD_TLS_CERT={certs.client_cert}",
        f"export MODELYARD_TLS_KEY={certs.client_key}",
    ]


def test_it_replaces_a_set_only_when_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["certs", "dev", str(tmp_path)]) == 0
    first = dev_certs_in(tmp_path).ca.read_bytes()
    assert main(["certs", "dev", str(tmp_path)]) == 1
    assert "already exist; pass --force to replace the whole set" in capsys.readouterr().err
    assert dev_certs_in(tmp_path).ca.read_bytes() == first
    assert main(["certs", "dev", str(tmp_path), "--force"]) == 0
    assert dev_certs_in(tmp_path).ca.read_bytes() != first


def test_the_directory_defaults_to_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MODELYARD_DATA_DIR", str(tmp_path / "data"))
    assert main(["certs", "dev"]) == 0
    assert dev_certs_in(tmp_path / "data" / "certs").server_key.exists()


def test_keep_leaves_a_whole_set_and_makes_a_missing_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["certs", "dev", str(tmp_path), "--keep"]) == 0  # none there: made
    first = dev_certs_in(tmp_path).server_key.read_bytes()
    assert main(["certs", "dev", str(tmp_path), "--keep"]) == 0
    assert dev_certs_in(tmp_path).server_key.read_bytes() == first
    assert f"# modelyard: kept the certificates in {tmp_path}" in capsys.readouterr().out
    dev_certs_in(tmp_path).client_key.unlink()  # a partial set is not kept, nor replaced
    assert main(["certs", "dev", str(tmp_path), "--keep"]) == 1
