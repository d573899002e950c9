"""Turn parsed YAML into the frozen schema, collecting every problem with its key path.

The schema's dataclasses are the single description of the file: their field
names are the only keys accepted, their annotations say how each value is
checked (`Annotated[...]` markers below), and an optional `violations()` method
states rules across fields. Nothing is built from a subtree that has problems,
but its siblings are still checked, so one run reports every mistake.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, Union
from urllib.parse import urlsplit

import yaml

from modelyard.config.durations import parse_duration
from modelyard.config.interpolation import (
    interpolate,
    is_secret_reference,
    secret_variable,
    secret_variable_hint,
)
from modelyard.config.problems import ConfigProblem, suggestion


# ----- markers used in Annotated[...] ------------------------------------------------------
@dataclass(frozen=True)
class Range:
    min: float | None = None
    max: float | None = None
    above: bool = False  # min is exclusive

    def check(self, value: float) -> str | None:
        low_ok = self.min is None or (value > self.min if self.above else value >= self.min)
        high_ok = self.max is None or value <= self.max
        if low_ok and high_ok:
            return None
        if self.min is not None and self.max is not None:
            return f"must be between {self.min:g} and {self.max:g}"
        if self.min is not None:
            return f"must be {'>' if self.above else '>='} {self.min:g}"
        return f"must be <= {self.max:g}"


@dataclass(frozen=True)
class Duration:
    """A string like ``30s`` read as seconds (float)."""


@dataclass(frozen=True)
class NonEmpty:
    """A string that is not blank."""


@dataclass(frozen=True)
class Secret:
    """A string that must come from the environment (``${VAR}``)."""


@dataclass(frozen=True)
class Url:
    schemes: tuple[str, ...] = ("http", "https")


@dataclass(frozen=True)
class OneOf:
    choices: tuple[str, ...]


@dataclass(frozen=True)
class ByKind:
    """Values of a mapping whose schema depends on its key and ``kind``.

    `resolve(name, raw)` gives (dataclass, kind) or an error message.
    """

    resolve: Callable[[str, Mapping[str, Any]], tuple[type, str] | str]


class Checked(Protocol):
    def violations(self) -> Iterator[tuple[str, str]]:
        """(key path relative to this object, message) for every rule across fields broken."""
        ...


class _Invalid:
    """Stands for a value that could not be built (its problems are already reported)."""


INVALID: Any = _Invalid()


# ----- the walk ------------------------------------------------------------------------------
@dataclass
class Reader:
    env: Mapping[str, str]
    lines: Mapping[str, int] = dataclasses.field(default_factory=dict)
    problems: list[ConfigProblem] = dataclasses.field(default_factory=list)
    # Key path of each secret field read → the variable it names (`SecretsConfig.references`).
    secret_references: dict[str, str] = dataclasses.field(default_factory=dict)

    def report(self, path: str, message: str) -> Any:
        self.problems.append(ConfigProblem(path, message, self._line(path)))
        return INVALID

    def _line(self, path: str) -> int | None:
        # A missing key has no line of its own: point at the nearest enclosing one.
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[: max(path.rfind("."), path.rfind("["), 0)]
        return None

    def read(self, tp: Any, raw: Any, path: str) -> Any:
        """`raw` as the type `tp`, or INVALID after reporting why not."""
        markers: tuple[Any, ...] = ()
        if typing.get_origin(tp) is typing.Annotated:
            tp, *extra = typing.get_args(tp)
            markers = tuple(extra)
        origin = typing.get_origin(tp)
        if origin in (Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if raw is None:
                return None
            return self.read(typing.Annotated[args[0], *markers] if markers else args[0], raw, path)
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            return self._dataclass(tp, raw, path)
        if origin is tuple:
            return self._tuple(typing.get_args(tp)[0], raw, path)
        if origin in (dict, Mapping):
            return self._mapping(typing.get_args(tp)[1], raw, path, markers)
        if origin is Literal:
            return self._choice(tuple(typing.get_args(tp)), raw, path)
        return self._scalar(tp, raw, path, markers)

    def _dataclass(self, cls: type, raw: Any, path: str) -> Any:
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            return self.report(path, f"must be a mapping, not {_describe(raw)}")
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        hints = typing.get_type_hints(cls, include_extras=True)
        ok = True
        for key in raw:
            if not isinstance(key, str) or key not in fields:
                self.report(_join(path, str(key)), f"unknown key{suggestion(str(key), fields)}")
                ok = False
        values: dict[str, Any] = {}
        for name, f in fields.items():
            if name not in raw:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    ok = False
                    self.report(_join(path, name), "is required")
                continue
            value = self.read(hints[name], raw[name], _join(path, name))
            ok = ok and value is not INVALID
            values[name] = value
        if not ok:
            return INVALID
        built = cls(**values)
        if hasattr(built, "violations"):
            broken = False
            for sub, message in typing.cast(Checked, built).violations():
                broken = True
                self.report(_join(path, sub) if sub else path, message)
            if broken:
                return INVALID
        return built

    def _tuple(self, item: Any, raw: Any, path: str) -> Any:
        if not isinstance(raw, list):
            return self.report(path, f"must be a list, not {_describe(raw)}")
        items = [self.read(item, value, f"{path}[{i}]") for i, value in enumerate(raw)]
        return INVALID if any(i is INVALID for i in items) else tuple(items)

    def _mapping(self, item: Any, raw: Any, path: str, markers: tuple[Any, ...]) -> Any:
        if raw is None:
            return types.MappingProxyType({})
        if not isinstance(raw, Mapping):
            return self.report(path, f"must be a mapping, not {_describe(raw)}")
        by_kind = next((m for m in markers if isinstance(m, ByKind)), None)
        out: dict[str, Any] = {}
        for key, value in raw.items():
            sub = _join(path, str(key))
            if not isinstance(key, str) or not key.strip():
                out[str(key)] = self.report(sub, "names must be non-empty strings")
                continue
            tp = item
            if by_kind is not None:
                value = value if value is not None else {}
                resolved = by_kind.resolve(key, value) if isinstance(value, Mapping) else None
                if isinstance(resolved, str):
                    out[key] = self.report(_join(sub, "kind") if "kind" in value else sub, resolved)
                    continue
                if resolved is not None:
                    tp, kind = resolved
                    value = {"kind": kind, **value}
            out[key] = self.read(tp, value, sub)
        if any(v is INVALID for v in out.values()):
            return INVALID
        return types.MappingProxyType(out)

    def _choice(self, choices: tuple[Any, ...], raw: Any, path: str) -> Any:
        value = self._interpolated(raw, path) if isinstance(raw, str) else raw
        if value is INVALID or value in choices:
            return value
        names = [str(c) for c in choices]
        return self.report(
            path, f"'{value}' is not one of {', '.join(names)}{suggestion(str(value), names)}"
        )

    def _scalar(self, tp: Any, raw: Any, path: str, markers: tuple[Any, ...]) -> Any:
        marker_types = {type(m) for m in markers}
        if Secret in marker_types:
            return self._secret(raw, path)
        if Duration in marker_types:
            value = self._duration(raw, path)
        elif tp is bool:
            value = self._typed(raw, path, bool, "true or false")
        elif tp is int:
            value = self._typed(raw, path, int, "an integer")
        elif tp is float:
            value = self._typed(raw, path, (int, float), "a number")
            value = value if value is INVALID else float(value)
        elif tp is str or tp is Path:
            value = self._string(raw, path, markers)
            if value is not INVALID and tp is Path:
                value = Path(value).expanduser() if value else None
        else:  # pragma: no cover - a schema mistake, not a file mistake
            raise TypeError(f"{path}: the schema uses unsupported type {tp!r}")
        if value is INVALID:
            return value
        for marker in markers:
            if isinstance(marker, Range):
                problem = marker.check(value)
                if problem:
                    return self.report(path, problem)
        return value

    def _typed(self, raw: Any, path: str, kinds: type | tuple[type, ...], name: str) -> Any:
        if isinstance(raw, str) and "${" in raw:
            # An environment reference in a number or flag: read the result as YAML would.
            text = self._interpolated(raw, path)
            if text is INVALID:
                return text
            try:
                raw = yaml.safe_load(text)
            except yaml.YAMLError:
                raw = text
        wrong_bool = isinstance(raw, bool) and kinds is not bool
        if wrong_bool or not isinstance(raw, kinds):
            return self.report(path, f"must be {name}, not {_describe(raw)}")
        return raw

    def _interpolated(self, raw: str, path: str) -> Any:
        result = interpolate(raw, self.env)
        for name in result.missing:
            self.report(
                path,
                f"environment variable {name} is not set "
                f"(set it, or write ${{{name}:-}} to make it optional)",
            )
        return INVALID if result.missing else result.value

    def _string(self, raw: Any, path: str, markers: tuple[Any, ...]) -> Any:
        non_empty = any(isinstance(m, NonEmpty) for m in markers)
        if not isinstance(raw, str):
            wanted = "a non-empty string" if non_empty else "a string"
            return self.report(path, f"must be {wanted}, not {_describe(raw)}")
        value = self._interpolated(raw, path)
        if value is INVALID:
            return value
        if non_empty and not value.strip():
            return self.report(path, "must be a non-empty string")
        for marker in markers:
            if isinstance(marker, OneOf) and value not in marker.choices:
                return self.report(
                    path,
                    f"'{value}' is not one of {', '.join(marker.choices)}"
                    f"{suggestion(value, marker.choices)}",
                )
            if isinstance(marker, Url):
                problem = _url_problem(raw, value, marker.schemes)
                if problem:
                    return self.report(path, problem)
        return value

    def _secret(self, raw: Any, path: str) -> Any:
        # Never echo the value: it may be the very secret that should not be here.
        if not isinstance(raw, str) or not is_secret_reference(raw):
            return self.report(
                path, f"put secrets in the environment, e.g. ${{{secret_variable_hint(path)}}}"
            )
        self.secret_references[path] = secret_variable(raw)
        return self._interpolated(raw, path)

    def _duration(self, raw: Any, path: str) -> Any:
        text = self._interpolated(raw, path) if isinstance(raw, str) else str(raw)
        if text is INVALID:
            return text
        try:
            return parse_duration(text)
        except ValueError as exc:
            return self.report(path, str(exc))


def _url_problem(raw: str, value: str, schemes: tuple[str, ...]) -> str | None:
    if not value and "${" in raw:
        return None  # an optional reference left empty on purpose: the entry is off
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.netloc:
        return f"'{value}' is not a URL (use e.g. {schemes[0]}://host:port)"
    if parts.password and "${" not in raw:
        return "put the password in the environment, e.g. redis://:${REDIS_PASSWORD}@host:6379"
    return None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _describe(raw: Any) -> str:
    if raw is None:
        return "null"
    if isinstance(raw, bool):
        return f"the flag {str(raw).lower()}"
    if isinstance(raw, str):
        return f"the string '{raw}'"
    if isinstance(raw, int | float):
        return f"the number {raw}"
    if isinstance(raw, list):
        return "a list"
    if isinstance(raw, Mapping):
        return "a mapping"
    return type(raw).__name__
