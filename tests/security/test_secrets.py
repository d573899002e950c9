"""Provider keys: the secrets file, references resolved from it, and `ProviderKeys` reloads."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

import pytest

from modelyard.backends.openai_compat.providers import ProviderEndpoint
from modelyard.config import ConfigError, parse_config
from modelyard.config.secrets_file import read_secrets_file
from modelyard.security.secrets import ProviderKeys, configured_secrets
from modelyard_client.scrub import MARKER, scrub


def _key() -> str:
    return "val" + secrets.token_hex(10)


def test_a_dotenv_file_is_read_with_exports_quotes_and_comments(tmp_path: Path) -> None:
    path = tmp_path / "secrets.env"
    path.write_text("# keys\nA_KEY=one1\nexport B_KEY = \"two 2\"\n\nC_KEY='three=3'\nD_KEY=\n")
    assert read_secrets_file(path) == {
        "A_KEY": "one1",
        "B_KEY": "two 2",
        "C_KEY": "three=3",
        "D_KEY": "",
    }


def test_a_yaml_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "secrets.yaml"
    path.write_text("A_KEY: one1\nB_KEY: 1234\n")
    assert read_secrets_file(path) == {"A_KEY": "one1", "B_KEY": "1234"}


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("- hunter2secret\n", "must hold NAME=value lines or a YAML mapping"),
        ("A_KEY: [hunter2secret]\n", "A_KEY must be a string"),
        ("not a name: hunter2secret\n", "'not a name' is not a variable name"),
        ("A_KEY: 'hunter2secret\n", "YAML syntax error at line 2"),
    ],
)
def test_a_bad_file_is_refused_without_quoting_its_values(
    tmp_path: Path, text: str, says: str
) -> None:
    path = tmp_path / "secrets"
    path.write_text(text)
    with pytest.raises(ConfigError) as refused:
        read_secrets_file(path)
    assert says in refused.value.message
    assert "hunter2secret" not in refused.value.message
    assert refused.value.problems[0].path == "security.secrets.file"


def _config(file: Path | None) -> str:
    security = f'  security:\n    secrets:\n      file: "{file}"\n' if file else ""
    return f"""
model_system:
{security}  backends:
    up:
      kind: openai_compat
      endpoint: "http://127.0.0.1:9/v1"
      api_key: "${{UP_API_KEY}}"
"""


def test_a_reference_is_resolved_from_the_file_which_wins_over_the_environment(
    tmp_path: Path,
) -> None:
    path = tmp_path / "secrets.env"
    path.write_text("UP_API_KEY=from-file-1\n")
    config = parse_config(_config(path), env={"UP_API_KEY": "from-env-1"})
    assert config.backends["up"].api_key == "from-file-1"  # type: ignore[union-attr]
    assert config.security.secrets.file == path
    assert dict(config.security.secrets.references) == {"backends.up.api_key": "UP_API_KEY"}


def test_a_reference_neither_source_holds_is_still_refused(tmp_path: Path) -> None:
    path = tmp_path / "secrets.env"
    path.write_text("OTHER=1\n")
    with pytest.raises(ConfigError) as refused:
        parse_config(_config(path), env={})
    assert refused.value.problems[0].path == "model_system.backends.up.api_key"
    assert "environment variable UP_API_KEY is not set" in refused.value.message


def test_an_unreadable_secrets_file_is_a_problem_at_its_key_and_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(_config(tmp_path / "absent"), env={"UP_API_KEY": "x"})
    problem = refused.value.problems[0]
    assert problem.path == "model_system.security.secrets.file"
    assert problem.line == 5
    assert f"cannot read the secrets file {tmp_path / 'absent'}: No such file" in problem.message


def test_reload_reads_the_new_value_and_keeps_the_old_one_scrubbed(tmp_path: Path) -> None:
    old, new = _key(), _key()
    path = tmp_path / "secrets.env"
    path.write_text(f"UP_API_KEY={old}\n")
    keys = ProviderKeys.for_config(parse_config(_config(path), env={}), env={})
    endpoint = ProviderEndpoint(
        "up", "http://x/v1", api_key=old, current_key=keys.key("UP_API_KEY").value
    )
    assert endpoint.headers() == {"Authorization": f"Bearer {old}"}
    path.write_text(f"UP_API_KEY={new}\n")
    assert endpoint.headers() == {"Authorization": f"Bearer {old}"}  # until the reload
    assert keys.reload() is True
    assert keys.generation == 1
    assert endpoint.headers() == {"Authorization": f"Bearer {new}"}
    assert scrub(f"{old} {new}") == f"{MARKER} {MARKER}"
    assert keys.reload() is False  # nothing changed
    assert "UP_API_KEY" in repr(keys.key("UP_API_KEY"))
    assert new not in repr(keys.key("UP_API_KEY")) + repr(endpoint)


def test_the_environment_is_read_again_when_the_file_does_not_hold_the_key() -> None:
    env = {"UP_API_KEY": "first-value-1"}
    keys = ProviderKeys.for_config(parse_config(_config(None), env=env), env=env)
    env["UP_API_KEY"] = "second-value-2"
    assert keys.reload() is True
    assert keys.get("UP_API_KEY") == "second-value-2"


def test_a_key_gone_from_every_source_keeps_its_last_value(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = _key()
    path = tmp_path / "secrets.env"
    path.write_text(f"UP_API_KEY={old}\n")
    keys = ProviderKeys.for_config(parse_config(_config(path), env={}), env={})
    path.write_text("# emptied\n")
    with caplog.at_level(logging.WARNING, logger="modelyard.security.secrets"):
        assert keys.reload() is False
    assert keys.get("UP_API_KEY") == old
    assert "secret UP_API_KEY is no longer in the secrets file or the environment" in caplog.text


def test_a_broken_file_at_reload_keeps_every_key_and_says_why_without_values(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = _key()
    path = tmp_path / "secrets.env"
    path.write_text(f"UP_API_KEY={old}\n")
    keys = ProviderKeys.for_config(parse_config(_config(path), env={}), env={})
    path.write_text("UP_API_KEY: [half written\n")
    with caplog.at_level(logging.ERROR, logger="modelyard.security.secrets"):
        assert keys.reload() is False
    assert keys.get("UP_API_KEY") == old
    assert "secrets not reloaded, every key kept as it was" in caplog.text
    assert "half written" not in caplog.text


def test_at_start_the_configuration_value_is_the_one_in_use() -> None:
    # parse_config was given its own env: the process environment does not override it.
    config = parse_config(_config(None), env={"UP_API_KEY": "given-value-1"})
    keys = ProviderKeys.for_config(config, env={"UP_API_KEY": "other-value-2"})
    assert keys.get("UP_API_KEY") == "given-value-1"


def test_every_secret_field_of_the_configuration_is_scrubbed_from_start() -> None:
    admin, service, up = _key(), _key(), _key()
    text = _config(None) + (
        '  security:\n    auth:\n      admin_key: "${ADMIN}"\n      service_key: "${SERVICE}"\n'
    )
    config = parse_config(text, env={"UP_API_KEY": up, "ADMIN": admin, "SERVICE": service})
    assert sorted(configured_secrets(config)) == sorted([admin, service, up])
    ProviderKeys.for_config(config, env={})
    assert scrub(f"{admin} {service} {up}") == f"{MARKER} {MARKER} {MARKER}"
