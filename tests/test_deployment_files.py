"""docker-compose.yml is a valid Compose file and runs roles the CLI knows; the README keeps
its two commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from compose_spec import PyCompose

from modelyard.assembly import ROLES
from modelyard.config import load_config

ROOT = Path(__file__).resolve().parent.parent


def test_compose_runs_every_role_once_with_known_flags() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    served: list[str] = []
    for name, service in compose["services"].items():
        command = service.get("command", [])
        if command[:1] == ["serve"]:
            roles = [arg for arg in command[1:] if not arg.startswith("-") and arg in ROLES]
            assert roles, f"{name}: no role in {command}"
            served.extend(roles)
            assert "--listen" in command
    assert sorted(served) == sorted(ROLES)
    assert "redis" in compose["services"]


def test_readme_gives_the_two_commands_and_ci_runs_the_test_one() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "scripts/up " in readme and "scripts/test " in readme
    assert "exec scripts/test" in (ROOT / ".ci" / "run").read_text()


def _compose() -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return compose


def test_compose_publishes_ports_on_the_hosts_loopback_only() -> None:
    published = [
        (name, port)
        for name, service in _compose()["services"].items()
        for port in service.get("ports", [])
    ]
    assert published, "the gateway's port is published"
    assert [(n, p) for n, p in published if not str(p).startswith("127.0.0.1:")] == []


def test_every_compose_service_talks_mtls_with_the_mounted_dev_certificates() -> None:
    services = _compose()["services"]
    assert services["certs"]["command"] == ["certs", "dev", "/certs", "--keep"]
    for name, service in services.items():
        command = service.get("command", [])
        if command[:1] != ["serve"]:
            continue
        config_file = command[command.index("--config") + 1]
        config = load_config(ROOT / config_file.removeprefix("/app/"), {})
        tls = config.security.tls
        assert (tls.mode, tls.cert, tls.key, tls.ca) == (
            "mtls",
            Path("/certs/server.pem"),
            Path("/certs/server-key.pem"),
            Path("/certs/ca.pem"),
        ), name
        assert "./deploy/certs:/certs:ro" in service["volumes"], name
        assert service["depends_on"]["certs"] == {"condition": "service_completed_successfully"}
        assert "grpc.secure_channel('127.0.0.1:50051'" in service["healthcheck"]["test"][-1]


def _compose_spec_problem(text: str) -> str | None:
    """Why `text` is not a Compose file under the Compose specification, or None.

    `compose-spec` (PyPI) is a parser of the specification's model: unknown keys
    (other than ``x-`` extensions), wrong types, unknown enum values, durations
    and ports that do not parse are refused. It does not resolve YAML merge keys
    (``<<: *modelyard``, which Compose does), so the file is loaded by PyYAML
    first and the parser sees the document Compose would.
    """
    try:
        PyCompose.from_json(json.dumps(yaml.safe_load(text))).validate()
    except ValueError as exc:
        return str(exc)
    return None


def test_compose_file_is_valid_under_the_compose_specification() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    assert _compose_spec_problem(text) is None
    # The parser bites: a misspelt key and a restart policy Compose does not know.
    misspelt = text.replace("healthcheck:", "healthchek:")
    assert "healthchek" in (_compose_spec_problem(misspelt) or "")
    broken = text.replace("restart: unless-stopped", "restart: sometimes")
    assert "sometimes" in (_compose_spec_problem(broken) or "")


def test_compose_references_name_services_and_volumes_that_exist() -> None:
    # What the specification's parser leaves to Compose: the names a service refers to.
    compose = _compose()
    services = compose["services"]
    volumes = set(compose.get("volumes") or {})
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert set(depends) <= set(services), f"{name} depends on {set(depends) - set(services)}"
        for mount in service.get("volumes", []):
            source = str(mount).split(":", 1)[0]
            if not source.startswith((".", "/")):  # a named volume, not a bind mount
                assert source in volumes, f"{name} mounts undeclared volume {source!r}"
