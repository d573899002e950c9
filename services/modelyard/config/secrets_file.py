"""The secrets file (`security.secrets.file`): variable values the operator mounts.

It holds the values of ``${VAR}`` references, one per variable, in either form::

    # .env style                      # or YAML
    OPENAI_API_KEY=sk-...             OPENAI_API_KEY: sk-...
    export MISTRAL_API_KEY="..."      MISTRAL_API_KEY: "..."

A value in the file wins over the same variable in the environment: the file
is what can change while the process runs (a mounted Kubernetes or Docker
secret), and SIGHUP re-reads it (`modelyard.security.secrets.ProviderKeys`).
Read here, in the configuration, so the file's values resolve references as
the environment's do, before anything is built.

No message about the file ever quotes its content: a line that cannot be read
is named by its number.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from modelyard.config.interpolation import interpolate
from modelyard.config.problems import ConfigError, ConfigProblem

FILE_KEY = "security.secrets.file"  # the key path every problem with the file names
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ENV_LINE = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)")


def read_secrets_file(path: Path) -> dict[str, str]:
    """Variable name → value from the file at `path`; raises `ConfigError` naming
    `FILE_KEY`, the path and the line, never a value."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise _problem(f"cannot read the secrets file {path}: {reason}") from None
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1)]
    meaningful = [(n, line) for n, line in lines if line and not line.startswith("#")]
    if meaningful and all(_ENV_LINE.fullmatch(line) for _, line in meaningful):
        return dict(_env_value(line) for _, line in meaningful)
    return _yaml_values(text, path)


def _env_value(line: str) -> tuple[str, str]:
    match = _ENV_LINE.fullmatch(line)
    assert match is not None
    name, value = match.group(1), match.group(2).strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    return name, value


def _yaml_values(text: str, path: Path) -> dict[str, str]:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise _problem(
            f"the secrets file {path} is neither NAME=value lines nor a YAML mapping "
            f"(YAML syntax error{where})"
        ) from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _problem(
            f"the secrets file {path} must hold NAME=value lines or a YAML mapping of "
            "variable names to values"
        )
    values: dict[str, str] = {}
    for name, value in raw.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise _problem(f"the secrets file {path}: '{name}' is not a variable name")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise _problem(f"the secrets file {path}: {name} must be a string")
        values[name] = str(value)
    return values


def secrets_file_path(raw_system: Any, env: Mapping[str, str]) -> Path | None:
    """The file `security.secrets.file` names in the raw (unvalidated) configuration, with
    its ``${VAR}`` references resolved; None when it names none (or not as a string: the
    schema reports that)."""
    try:
        given = raw_system["security"]["secrets"]["file"]
    except (KeyError, TypeError):
        return None
    if not isinstance(given, str) or not given.strip():
        return None
    resolved = interpolate(given, env)
    if resolved.missing or not resolved.value.strip():
        return None  # the schema's reading of the key reports the unset variable
    return Path(resolved.value).expanduser()


def with_secrets_file(raw_system: Any, env: Mapping[str, str]) -> Mapping[str, str]:
    """`env` with the configured secrets file's values over it (`env` itself without one)."""
    path = secrets_file_path(raw_system, env)
    if path is None:
        return env
    return {**env, **read_secrets_file(path)}


def _problem(message: str) -> ConfigError:
    return ConfigError([ConfigProblem(FILE_KEY, message)])
