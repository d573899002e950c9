"""docker-compose.yml runs roles the CLI knows, and the README keeps its two commands."""

from __future__ import annotations

from pathlib import Path

import yaml

from modelyard.assembly import ROLES

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
