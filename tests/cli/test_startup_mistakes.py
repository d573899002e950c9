"""A start-up mistake is one clear line per problem on stderr and exit status 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.cli import STARTUP_MISTAKE, main


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("MODELYARD_CONFIG", "MODELYARD_ADDRESS", "MODELYARD_LOG_LEVEL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MODELYARD_DATA_DIR", str(tmp_path))


def test_a_mistyped_balancing_strategy_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MODELYARD_BALANCING", "fastest")
    assert main(["up", "--listen", "127.0.0.1:0"]) == STARTUP_MISTAKE == 2
    err = capsys.readouterr().err
    assert err == (
        "modelyard: cannot start: MODELYARD_BALANCING: 'fastest' is not one of "
        "round_robin, least_loaded, p2c, cost_optimized, region_affinity\n"
    )


def test_a_role_that_needs_the_registry_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "gateway", "--listen", "127.0.0.1:0"]) == 2
    assert capsys.readouterr().err == (
        "modelyard: cannot start: this role needs the registry's address (--registry)\n"
    )


def test_an_address_that_cannot_be_served_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "hotswap", "--listen", "203.0.113.1:1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("modelyard: cannot start: ") and err.count("\n") == 1
    assert "Traceback" not in err


def test_unbuilt_keys_are_named_at_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model_system:\n  registry: {cache_ttl: 60s}\n")
    # The gateway without a registry stops right after the notices: nothing is served.
    assert main(["serve", "gateway", "--config", str(path), "--listen", "127.0.0.1:0"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[0] == (
        "modelyard: accepted, not implemented yet: registry.cache_ttl "
        "(the registry keeps no cache; responses: gateway.cache.ttl)"
    )
