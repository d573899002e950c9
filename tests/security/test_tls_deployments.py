"""The dev certificates run both deployments over mTLS, end to end.

Embedded: one in-process stack whose services call each other over mTLS (the
gateway's catalog copy, the backend's announcement), answering a Generate
through `modelyard_client` with the dev client certificate. Split: `modelyard
serve` roles as separate processes (registry, an OpenAI-compatible backend,
the gateway), each with the same `security.tls` file, a Generate through the
gateway answered by the backend in its own process; a plaintext client and a
client whose certificate another CA signed are refused at each.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from backends.openai_compat.openai_fake import FakeUpstream
from conftest import StackFactory, free_port
from support.scripted_engine import ScriptedEngine

from modelyard.cli import STARTUP_MISTAKE, main
from modelyard.config import parse_config
from modelyard.security.dev_certs import (
    CLIENT_NAME,
    DevCerts,
    certificate_pem,
    issue,
    key_pem,
    make_ca,
    write_dev_certs,
)
from modelyard_client import GatewayClient
from modelyard_client.errors import ModelNotFound, ModelyardError

START_TIMEOUT_S = 60.0  # a process's start, on a loaded two-core machine


@pytest.fixture
def certs(tmp_path: Path) -> DevCerts:
    return write_dev_certs(tmp_path / "certs")


def _tls_yaml(certs: DevCerts) -> str:
    return (
        "  security:\n"
        "    tls:\n"
        "      mode: mtls\n"
        f"      cert: {certs.server_cert}\n"
        f"      key: {certs.server_key}\n"
        f"      ca: {certs.ca}\n"
    )


def _client(address: str, certs: DevCerts) -> GatewayClient:
    return GatewayClient(
        address, timeout_s=10, ca=certs.ca, cert=certs.client_cert, key=certs.client_key
    )


def _foreign_client(address: str, certs: DevCerts, tmp_path: Path) -> GatewayClient:
    """A client trusting the right CA whose own certificate another CA signed."""
    other = make_ca("another CA")
    cert, key = issue(other, CLIENT_NAME, [], server=False)
    (tmp_path / "other.pem").write_bytes(certificate_pem(cert))
    (tmp_path / "other-key.pem").write_bytes(key_pem(key))
    return GatewayClient(
        address,
        timeout_s=10,
        ca=certs.ca,
        cert=tmp_path / "other.pem",
        key=tmp_path / "other-key.pem",
    )


def _refused_code(client: GatewayClient, model: str) -> str:
    with client, pytest.raises(ModelyardError) as refused:
        client.generate(model, "hi")
    return refused.value.code.name


async def test_the_embedded_stack_serves_over_mtls_with_the_dev_certificates(
    make_stack: StackFactory, certs: DevCerts, tmp_path: Path
) -> None:
    config = parse_config(f"model_system:\n{_tls_yaml(certs)}")
    # Its gateway follows the registry, and its backend announced to it, over mTLS.
    stack = await make_stack(config=config, engines=[ScriptedEngine()])
    assert stack.view is not None and stack.view.get("scripted/echo").deployments

    def generate() -> str:
        with _client(stack.address, certs) as client:
            return client.generate("scripted/echo", "hi", max_tokens=8).text

    assert await asyncio.to_thread(generate) == "hello world"
    plain = GatewayClient(stack.address, timeout_s=10)
    assert await asyncio.to_thread(_refused_code, plain, "scripted/echo") == "UNAVAILABLE"
    foreign = _foreign_client(stack.address, certs, tmp_path)
    assert await asyncio.to_thread(_refused_code, foreign, "scripted/echo") == "UNAVAILABLE"


class Role:
    """One `modelyard serve` process, started and stopped by its own PID."""

    def __init__(self, name: str, args: list[str], log: Path) -> None:
        self.name, self.args, self.log = name, args, log
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        modelyard = str(Path(sys.executable).parent / "modelyard")
        with self.log.open("wb") as stderr:
            self.proc = await asyncio.create_subprocess_exec(
                *[modelyard, "serve", *self.args, "--listen", self.address],
                *["--metrics-listen", "off"],
                *["--grace", "1", "--drain-notice", "0", "--log-level", "WARNING"],
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                env={k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")},
            )

    async def serving(self) -> None:
        """Wait for the process's "serving" line (it prints it once it listens, synced)."""
        assert self.proc is not None and self.proc.stdout is not None
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                while b"modelyard: serving" not in await self.proc.stdout.readline():
                    if self.proc.stdout.at_eof():
                        raise RuntimeError("exited")
        except (TimeoutError, RuntimeError) as exc:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise AssertionError(f"{self.name} did not start ({exc!r}): {tail}") from None

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.terminate()  # this PID only
        try:
            await asyncio.wait_for(self.proc.wait(), timeout=15)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


@pytest.fixture
async def roles() -> AsyncIterator[list[Role]]:
    started: list[Role] = []
    yield started
    for role in reversed(started):
        await role.stop()


async def test_split_roles_in_separate_processes_talk_mtls_with_the_dev_certificates(
    certs: DevCerts, upstream: FakeUpstream, roles: list[Role], tmp_path: Path
) -> None:
    config = tmp_path / "tls.yaml"
    config.write_text(f"model_system:\n{_tls_yaml(certs)}")
    backend_config = tmp_path / "backend.yaml"
    backend_config.write_text(
        "model_system:\n"
        f"  backends:\n    custom: {{kind: openai_compat, endpoint: '{upstream.url}'}}\n"
        f"{_tls_yaml(certs)}"
    )

    def role(name: str, *args: str) -> Role:
        data = ["--data-dir", str(tmp_path / f"{name}-data")]
        made = Role(name, [*args, *data], tmp_path / f"{name}.log")
        roles.append(made)
        return made

    registry = role("registry", "registry", "--config", str(config))
    await registry.start()
    await registry.serving()
    at = ["--registry", registry.address]
    backend = role("backend", "backend-openai-compat", *at, "--config", str(backend_config))
    gateway = role("gateway", "gateway", *at, "--config", str(config))
    await asyncio.gather(backend.start(), gateway.start())
    await asyncio.gather(backend.serving(), gateway.serving())

    def generate() -> str:
        deadline = time.monotonic() + 30
        with _client(gateway.address, certs) as client:
            while True:  # until the gateway's catalog copy holds the backend's model
                try:
                    return client.generate("custom/model-a", "hi", max_tokens=8).text
                except ModelNotFound:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)

    # The gateway called the backend process, which announced itself to the registry:
    # every hop over mTLS with the service certificate.
    assert (await asyncio.to_thread(generate)).startswith("model-a;")
    for service in (registry, backend, gateway):
        plain = GatewayClient(service.address, timeout_s=10)
        code = await asyncio.to_thread(_refused_code, plain, "custom/model-a")
        assert code == "UNAVAILABLE", service.name
    foreign = _foreign_client(gateway.address, certs, tmp_path)
    assert await asyncio.to_thread(_refused_code, foreign, "custom/model-a") == "UNAVAILABLE"


def test_a_missing_certificate_stops_the_start_with_one_line_naming_it(
    certs: DevCerts, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    certs.server_cert.unlink()
    config = tmp_path / "tls.yaml"
    config.write_text(f"model_system:\n{_tls_yaml(certs)}")
    data = str(tmp_path / "data")
    argv = ["serve", "registry", "--listen", "127.0.0.1:0", "--config", str(config)]
    assert main([*argv, "--data-dir", data]) == STARTUP_MISTAKE
    assert capsys.readouterr().err == (
        f"modelyard: model_system.security.tls.cert: {certs.server_cert}: no such file\n"
    )
    assert not (tmp_path / "data").exists()  # nothing started: not even the data directory


async def test_the_cli_client_commands_talk_mtls_with_the_dev_client_certificate(
    make_stack: StackFactory, certs: DevCerts, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = parse_config(f"model_system:\n{_tls_yaml(certs)}")
    stack = await make_stack(config=config, engines=[ScriptedEngine()])
    flags = ["--address", stack.address, "--tls-ca", str(certs.ca)]
    with_cert = [*flags, "--tls-cert", str(certs.client_cert), "--tls-key", str(certs.client_key)]
    assert await asyncio.to_thread(main, ["models", *with_cert]) == 0
    assert await asyncio.to_thread(main, ["models", *flags]) == 1  # no certificate: refused
    monkeypatch.setenv("MODELYARD_TLS_CA", str(certs.ca))
    monkeypatch.setenv("MODELYARD_TLS_CERT", str(certs.client_cert))
    monkeypatch.setenv("MODELYARD_TLS_KEY", str(certs.client_key))
    assert await asyncio.to_thread(main, ["models", "--address", stack.address]) == 0
