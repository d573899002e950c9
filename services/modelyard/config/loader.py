"""Read a configuration file into a `ModelyardConfig`, or say everything wrong with it."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import yaml

from modelyard.config.convert import INVALID, Reader
from modelyard.config.problems import ConfigError, ConfigFileUnreadable, ConfigProblem
from modelyard.config.schema import ModelyardConfig
from modelyard.config.secrets_file import FILE_KEY, with_secrets_file

# The embedded default, read through the same code as any file. Its backends are
# also the ones a file without a `backends:` section gets: the local engine, an
# Ollama found on this machine, and hosted providers whose key is in the
# environment (an empty `${VAR:-}` turns the entry off rather than failing).
DEFAULT_YAML = """\
model_system:
  backends:
    local: {}
    ollama: {}
    openai: {api_key: "${OPENAI_API_KEY:-}"}
    mistral: {api_key: "${MISTRAL_API_KEY:-}"}
    openrouter: {api_key: "${OPENROUTER_API_KEY:-}"}
    custom:
      kind: openai_compat
      endpoint: "${CUSTOM_AI_PROVIDER_URL:-}"
      api_key: "${CUSTOM_AI_API_KEY:-}"
"""


@dataclass(frozen=True, kw_only=True)
class _ConfigFile:
    model_system: ModelyardConfig = field(default_factory=ModelyardConfig)
    version: Literal[1] = 1


def load_config(
    path: str | os.PathLike[str], env: Mapping[str, str] | None = None
) -> ModelyardConfig:
    """The validated configuration in the YAML file at `path`.

    `env` (default `os.environ`) resolves ``${VAR}`` references. Raises
    `ConfigFileUnreadable` when the file cannot be read and `ConfigError` listing
    every problem, each with its key path and line, when it is invalid.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigFileUnreadable([ConfigProblem("", f"cannot read {path}: {reason}")]) from None
    return parse_config(text, source=str(path), env=env)


def default_config(env: Mapping[str, str] | None = None) -> ModelyardConfig:
    """The configuration `modelyard up` runs with when no file is given."""
    return parse_config(DEFAULT_YAML, source="<built-in default>", env=env)


def parse_config(
    text: str, *, source: str = "<string>", env: Mapping[str, str] | None = None
) -> ModelyardConfig:
    """Like `load_config`, for YAML already in memory."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError([_syntax_problem(exc)], source) from None
    lines: dict[str, int] = {}
    problems: list[ConfigProblem] = []
    raw: Any = None
    if node is not None:
        _index(node, "", lines, problems)
        raw = yaml.SafeLoader("").construct_document(node)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([ConfigProblem("", "the file must hold a mapping (model_system: ...)")])
    system = raw.get("model_system")
    if system is None or (isinstance(system, dict) and "backends" not in system):
        system = {**(system or {}), "backends": _default_backends()}
        raw = {**raw, "model_system": system}
    env = os.environ if env is None else env
    try:  # the secrets file's values resolve ${VAR} as the environment's do
        env = with_secrets_file(system, env)
    except ConfigError as exc:
        key = f"model_system.{FILE_KEY}"
        raise ConfigError(
            [ConfigProblem(key, p.message, lines.get(key)) for p in exc.problems], source
        ) from None
    reader = Reader(env, lines, problems)
    built = reader.read(_ConfigFile, raw, "")
    if reader.problems or built is INVALID:
        raise ConfigError(reader.problems, source)
    config: ModelyardConfig = built.model_system
    given = frozenset(_key_path(k) for k in lines if k.startswith("model_system."))
    object.__setattr__(config, "given_keys", given)  # frozen: the loader alone sets it
    references = {
        path.removeprefix("model_system."): name for path, name in reader.secret_references.items()
    }
    object.__setattr__(config.security.secrets, "references", MappingProxyType(references))
    return config


def summary_lines(config: ModelyardConfig) -> list[str]:
    """A few lines for people: which backends run, which are off and why, which models."""
    active = config.active_backends()
    off = {n: b.disabled_reason for n, b in config.backends.items() if n not in active}
    out = [
        "backends enabled: " + (", ".join(f"{n} ({b.kind})" for n, b in active.items()) or "none"),
    ]
    if off:
        out.append("backends off: " + ", ".join(f"{n} ({why})" for n, why in off.items()))
    models = config.model_ids()
    out.append(f"models listed: {len(models)}" + (f" ({', '.join(models)})" if models else ""))
    agents = len(config.selection.agents)
    out.append(f"selection: {config.selection.algorithm}, {agents} agent rule(s)")
    return out


def _key_path(line_key: str) -> str:
    """``model_system.selection.fallback[0]`` → ``selection.fallback``."""
    return re.sub(r"\[\d+\]", "", line_key.removeprefix("model_system."))


def _default_backends() -> Any:
    return yaml.safe_load(DEFAULT_YAML)["model_system"]["backends"]


def _index(
    node: yaml.Node, path: str, lines: dict[str, int], problems: list[ConfigProblem]
) -> None:
    """Record the line of every key and list item; refuse keys given twice."""
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            sub = f"{path}.{key}" if path else key
            line = key_node.start_mark.line + 1
            if key in first and key != "<<":
                problems.append(
                    ConfigProblem(sub, f"duplicate key (first given at line {first[key]})", line)
                )
            first.setdefault(key, line)
            lines.setdefault(sub, line)
            _index(value_node, sub, lines, problems)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            sub = f"{path}[{i}]"
            lines.setdefault(sub, item.start_mark.line + 1)
            _index(item, sub, lines, problems)


def _syntax_problem(exc: yaml.YAMLError) -> ConfigProblem:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is None:
        return ConfigProblem("", f"YAML syntax error: {problem}")
    return ConfigProblem(
        "", f"YAML syntax error at line {mark.line + 1}, column {mark.column + 1}: {problem}"
    )
