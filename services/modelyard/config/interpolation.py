"""``${VAR}`` and ``${VAR:-default}`` in configuration strings; ``$$`` is a literal ``$``.

Secrets come only from the environment (or the secrets file,
`modelyard.config.secrets_file`, whose values resolve references as the
environment's do): a secret field must be exactly one reference, so a key
pasted into the configuration file is refused before it is ever used.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_REFERENCE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SECRET_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::-)?\}")


@dataclass(frozen=True)
class Interpolated:
    value: str
    missing: tuple[str, ...]  # referenced variables that are unset and have no default
    referenced: bool  # whether any ${...} appeared (an empty result is then deliberate)


def interpolate(text: str, env: Mapping[str, str]) -> Interpolated:
    """Replace every reference in `text` from `env`."""
    missing: list[str] = []
    referenced = False

    def replace(match: re.Match[str]) -> str:
        nonlocal referenced
        if match.group(0) == "$$":
            return "$"
        referenced = True
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        missing.append(name)
        return ""

    value = _REFERENCE.sub(replace, text)
    return Interpolated(value, tuple(missing), referenced)


def is_secret_reference(text: str) -> bool:
    """True for ``${VAR}`` or ``${VAR:-}`` alone; a non-empty default would be a literal secret."""
    return _SECRET_REFERENCE.fullmatch(text.strip()) is not None


def secret_variable(text: str) -> str:
    """``OPENAI_API_KEY`` for ``${OPENAI_API_KEY}`` (a text `is_secret_reference` accepted)."""
    match = _REFERENCE.search(text)
    assert match is not None and match.group(1), "not a secret reference"
    return match.group(1)


def secret_variable_hint(path: str) -> str:
    """``OPENAI_API_KEY`` for ``model_system.backends.openai.api_key``."""
    parts = path.split(".")[-2:]
    return re.sub(r"[^A-Za-z0-9]+", "_", "_".join(parts)).upper().strip("_")
